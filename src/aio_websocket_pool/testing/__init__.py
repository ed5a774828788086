"""A fault-injecting test harness for code that uses the pool, ours and yours.

Two real network peers on 127.0.0.1, whose faults tests switch on while they
run (see ``docs/testing.md``):

* :class:`LoopbackServer`, a websockets echo server: slow, held or refused
  handshakes; connections closed with any close code, idle or busy; stray
  messages after replies or pushed at any time; a frozen server that stops
  reading (and so stops answering pings); stop and restart on the same port;
  counts of connections and sockets; the headers of every handshake.
* :class:`TcpProxy`, a TCP proxy to put in front of it: freeze one connection
  or all (a half-open peer), slow every chunk of bytes, drop connections.
* :class:`Chaos` turns those knobs at random (seeded) while
  :func:`tagged_workload` sends tagged requests through a pool and cancels
  some at random points; its :class:`Tally` counts every outcome, and any
  reply delivered to the wrong borrower.
* :class:`JsonRpcServer`, a JSON-RPC 2.0 server for the multiplexer: out-of-order,
  erroring, duplicate and misaddressed replies, junk, subscriptions and
  their notifications, connections closed mid-call.

It is also a pytest plugin, which pytest loads through the package's
``pytest11`` entry point: the ``websocket_server`` and ``websocket_proxy``
fixtures, which need pytest-asyncio (the ``testing`` extra installs both).
Importing this module does not import pytest: the plugin's hook is defined
only when pytest is already loaded, as it is whenever pytest loads a plugin.
"""

import sys

from ._chaos import FAST_RECOVERY, Chaos, Tally, tagged_workload
from ._jsonrpc_server import JsonRpcServer
from ._proxy import ProxyLink, TcpProxy
from ._server import STRAY_PREFIX, LoopbackServer, Which

if "pytest" in sys.modules:  # loaded by pytest, as a plugin or from a test
    from ._plugin import pytest_configure as pytest_configure

__all__ = [
    "FAST_RECOVERY",
    "STRAY_PREFIX",
    "Chaos",
    "JsonRpcServer",
    "LoopbackServer",
    "ProxyLink",
    "Tally",
    "TcpProxy",
    "Which",
    "tagged_workload",
]
