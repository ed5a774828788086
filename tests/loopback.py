"""The loopback server the tests import as ``loopback``: the shipped harness's own."""

from aio_websocket_pool.testing import LoopbackServer

__all__ = ["LoopbackServer"]
