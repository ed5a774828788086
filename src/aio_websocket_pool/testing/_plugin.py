"""The pytest plugin of :mod:`aio_websocket_pool.testing`: its hook.

pytest loads the plugin through the ``pytest11`` entry point named
``aio_websocket_pool.testing``, which every installation of the package has,
with or without the ``testing`` extra. So the plugin must not break a test
run that lacks pytest-asyncio: it imports only pytest, and registers the real
fixtures only where pytest-asyncio is active. Elsewhere the fixtures still
exist, and a test that uses one fails with the command that installs what is
missing, while every other test runs.

The entry point's name is the module's, so that a ``conftest.py`` that still
lists ``pytest_plugins = ["aio_websocket_pool.testing"]`` finds it loaded
already (pytest rejects a module registered a second time under another name).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import pytest

#: How to get what the fixtures need.
INSTALL_HINT = "pip install 'aio-websocket-pool[testing]'"


def pytest_configure(config: pytest.Config) -> None:
    """Register the fixtures, or stand-ins that say why they cannot run."""
    plugins = config.pluginmanager
    if _asyncio_is_active(plugins):
        from . import _fixtures  # noqa: PLC0415  (imports pytest_asyncio)

        plugins.register(_fixtures, _fixtures.__name__)
    else:
        plugins.register(_WithoutAsyncio(), f"{__name__}.without_asyncio")


def _asyncio_is_active(plugins: pytest.PytestPluginManager) -> bool:
    # Imported and registered: not blocked with -p no:asyncio, nor left out
    # under PYTEST_DISABLE_PLUGIN_AUTOLOAD.
    plugin = sys.modules.get("pytest_asyncio.plugin")
    return plugin is not None and plugins.is_registered(plugin)


class _WithoutAsyncio:
    """The fixtures where pytest-asyncio is missing or disabled: each fails its test."""

    @pytest.fixture
    def websocket_server(self) -> NoReturn:
        _missing("websocket_server")

    @pytest.fixture
    def websocket_proxy(self) -> NoReturn:
        _missing("websocket_proxy")


def _missing(fixture: str) -> NoReturn:
    pytest.fail(
        f"the {fixture} fixture of aio_websocket_pool.testing needs pytest-asyncio, "
        f"which is not installed or not enabled: {INSTALL_HINT}",
        pytrace=False,
    )
