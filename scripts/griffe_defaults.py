"""Griffe extension: the API reference shows a default as the value it has.

Griffe reads the source, so ``history_size: int = DEFAULT_HISTORY_SIZE`` is
shown as the constant's name, which tells a reader nothing they can type in,
and ``drain_max_bytes = DEFAULT_DRAIN_MAX_BYTES`` hides 16 MiB. Once the
package is loaded, each default written as an expression (a name, an
f-string, arithmetic) is replaced by the repr of what the imported function
really has, as ``help()`` would show it, when that is a plain value (a
number, a string, a bool or None), or an enum member whose repr says what it
means (``acquire(timeout=...)`` shows "the pool's acquire_timeout"). Other
defaults (a dataclass field's ``default_factory``, say) keep their source text.

mkdocs.yml loads this file by its path (mkdocstrings' ``extensions`` option).
"""

from __future__ import annotations

import enum
import importlib
import inspect
from typing import Any

import griffe

PLAIN = (int, float, str, bytes, bool, type(None))


def _runtime(obj: griffe.Object) -> Any:
    """The live object at ``obj``'s path, or None when the path leads nowhere at run time."""
    module = obj.module
    found: Any = importlib.import_module(module.path)
    for name in obj.path.removeprefix(module.path).split(".")[1:]:
        found = getattr(found, name, None)
    return found


def _functions(obj: griffe.Object) -> list[griffe.Function]:
    found = []
    for member in obj.members.values():
        if member.is_alias:
            continue  # documented where it is defined
        if isinstance(member, griffe.Function):
            found.append(member)
        elif isinstance(member, griffe.Class | griffe.Module):
            found += _functions(member)
    return found


class RuntimeDefaults(griffe.Extension):
    """Replace a default's expression with its value (see the module's docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        del kwargs  # the loader: nothing to load
        for function in _functions(pkg):
            named = [p for p in function.parameters if isinstance(p.default, griffe.Expr)]
            live = _runtime(function) if named else None
            if live is None:
                continue
            parameters = inspect.signature(live).parameters
            for parameter in named:
                value = parameters[parameter.name].default
                if isinstance(value, (*PLAIN, enum.Enum)):
                    parameter.default = repr(value)
