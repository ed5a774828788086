"""JSON-RPC 2.0 calls and subscriptions (``pool.json_rpc``), against a real JSON-RPC server."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from aio_websocket_pool import (
    ConnectionBusyError,
    ConnectionPoolUnavailableError,
    JsonRpcError,
    RequestLostError,
    RequestTimeoutError,
    SubscriptionState,
    WebsocketConnectionPool,
)
from aio_websocket_pool._jsonrpc import RESUBSCRIBE_AT_ONCE
from aio_websocket_pool.testing import JsonRpcServer
from aiohttp_server import AiohttpJsonRpcServer
from helpers import Unsolicited
from muxing import leave_behind_a_busy_call


def pool_for(server: JsonRpcServer, **kwargs: Any) -> WebsocketConnectionPool:
    return WebsocketConnectionPool(server.uri, acquire_timeout=1.0, **kwargs)


async def eventually(condition: Any, seconds: float = 1.0) -> None:
    """Poll ``condition`` (the server's and client's counters have no event to wait on)."""
    async with asyncio.timeout(seconds):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_calls_return_their_results_out_of_order(rpc_server: JsonRpcServer) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc(connections=2) as rpc:
        results = await asyncio.gather(
            rpc.call("sleep", [0.1, "slow"]),
            rpc.call("sleep", [0.0, "quick"]),
            rpc.call("echo", {"a": 1}),
            rpc.call("echo"),
        )
        assert pool.stats().multiplexed == 2
    assert list(results) == ["slow", "quick", {"a": 1}, None]


async def test_an_error_reply_raises_json_rpc_error(rpc_server: JsonRpcServer) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc() as rpc:
        with pytest.raises(JsonRpcError) as failed:
            await rpc.call("fail", [-32601, "method not found", {"hint": "x"}])
    assert (failed.value.code, failed.value.message) == (-32601, "method not found")
    assert failed.value.data == {"hint": "x"}


async def test_duplicate_misaddressed_and_junk_replies_are_counted_never_delivered(
    rpc_server: JsonRpcServer,
) -> None:
    on_unsolicited = Unsolicited()
    seen = on_unsolicited.messages

    async with pool_for(rpc_server, on_unsolicited=on_unsolicited) as pool, pool.json_rpc() as rpc:
        assert await rpc.call("duplicate", [1]) == [1]
        with pytest.raises(RequestTimeoutError):
            await rpc.call("wrong_id", [2], timeout=0.1)
        assert await rpc.call("junk", [3]) == [3]
        assert await rpc.call("echo", [4]) == [4]  # the reader survived it all
        await eventually(lambda: len(seen) == 2)
        stats = rpc.stats()
    assert (stats.late_replies, stats.unmatched, stats.timed_out) == (1, 2, 1)
    assert seen[1] == "this is not JSON {"


async def test_a_connection_closed_mid_call_fails_at_once_and_the_next_call_works(
    rpc_server: JsonRpcServer,
) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc(request_timeout=1.0) as rpc:
        started = asyncio.get_running_loop().time()
        slow = asyncio.create_task(rpc.call("sleep", [0.5, "never"]))
        with pytest.raises(RequestLostError):
            await rpc.call("close")
        with pytest.raises(RequestLostError):
            await slow  # in flight on the same connection
        assert asyncio.get_running_loop().time() - started < 0.3
        assert await rpc.call("echo", ["again"]) == ["again"]


@pytest.mark.parametrize(
    ("method", "params"),
    [(1, None), ("echo", "a string"), ("echo", 5)],
    ids=["method", "str", "int"],
)
def test_bad_calls_are_refused_at_once(method: Any, params: Any) -> None:
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/")
    rpc = pool.json_rpc()
    with pytest.raises(TypeError):
        rpc.subscribe(method, params)
    with pytest.raises(TypeError):
        rpc.call(method, params).send(None)


def test_bad_arguments_are_refused_at_once() -> None:
    pool = WebsocketConnectionPool("ws://127.0.0.1:9/", max_connections=2)
    with pytest.raises(ValueError, match="max_connections"):
        pool.json_rpc(connections=3)
    with pytest.raises(ValueError, match="max_in_flight"):
        pool.json_rpc(max_in_flight=0)
    with pytest.raises(TypeError, match="resubscribe"):
        pool.json_rpc(resubscribe="yes")  # type: ignore[arg-type]


async def test_a_subscription_yields_its_notifications_and_unsubscribes_on_exit(
    rpc_server: JsonRpcServer,
) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc() as rpc:
        async with rpc.subscribe("subscribe", ["newHeads"], unsubscribe="unsubscribe") as heads:
            assert heads.state is SubscriptionState.ACTIVE
            assert list(rpc_server.subscriptions) == [heads.server_id]
            for n in range(3):
                await rpc_server.notify({"number": n})
            received = [await anext(heads) for _ in range(3)]
        assert heads.state is SubscriptionState.CLOSED  # type: ignore[comparison-overlap]
        assert rpc_server.subscriptions == {}
    assert received == [{"number": 0}, {"number": 1}, {"number": 2}]


async def test_an_unknown_subscription_notification_is_counted_and_given_to_on_unsolicited(
    rpc_server: JsonRpcServer,
) -> None:
    on_unsolicited = Unsolicited()
    seen = on_unsolicited.messages

    async with (
        pool_for(rpc_server, on_unsolicited=on_unsolicited) as pool,
        pool.json_rpc() as rpc,
        rpc.subscribe("subscribe") as sub,
    ):
        rpc_server.subscriptions["0xfeed"] = rpc_server.subscriptions[str(sub.server_id)]
        await rpc_server.notify("stray", subscription="0xfeed")
        await rpc_server.notify("mine", subscription=str(sub.server_id))
        assert await anext(sub) == "mine"
        assert rpc.stats().unmatched == 1
        await eventually(lambda: len(seen) == 1)
    assert json.loads(seen[0])["params"] == {"subscription": "0xfeed", "result": "stray"}


async def test_subscriptions_are_resubscribed_after_a_loss_with_gaps(
    rpc_server: JsonRpcServer,
) -> None:
    rpc_server.subscribe_delay = 0.02
    async with pool_for(rpc_server) as pool, pool.json_rpc(request_timeout=1.0) as rpc:
        subs = [rpc.subscribe("subscribe", [n]) for n in range(2 * RESUBSCRIBE_AT_ONCE)]
        for sub in subs:
            await sub.__aenter__()
        old_ids = {sub.server_id for sub in subs}
        rpc_server.peak_subscribes_in_flight = 0
        await rpc_server.close_connections()
        await eventually(lambda: all(sub.state is SubscriptionState.ACTIVE for sub in subs)
                         and all(sub.gaps for sub in subs))  # fmt: skip
        assert rpc_server.peak_subscribes_in_flight == RESUBSCRIBE_AT_ONCE
        assert not old_ids & {sub.server_id for sub in subs}
        for sub in subs:
            (lost_at, restored_at) = sub.gaps[0]
            assert lost_at <= restored_at
        await rpc_server.notify("after")
        assert [await anext(sub) for sub in subs] == ["after"] * len(subs)
        for sub in subs:
            await sub.__aexit__(None, None, None)
    triggers = [record.trigger for record in rpc.history if "/sub-" in record.connection_id]
    assert triggers.count("interrupt") == triggers.count("restore") == len(subs)


async def test_without_resubscribe_a_lost_subscription_raises(rpc_server: JsonRpcServer) -> None:
    async with (
        pool_for(rpc_server) as pool,
        pool.json_rpc(resubscribe=False) as rpc,
        rpc.subscribe("subscribe") as sub,
    ):
        reading = asyncio.create_task(anext(sub))
        await asyncio.sleep(0.01)
        await rpc_server.close_connections()
        with pytest.raises(RequestLostError):
            await reading
        assert sub.state is SubscriptionState.CLOSED


async def test_a_refused_subscription_raises_and_leaves_nothing(rpc_server: JsonRpcServer) -> None:
    rpc_server.refuse_subscriptions = True
    async with pool_for(rpc_server) as pool, pool.json_rpc() as rpc:
        sub = rpc.subscribe("subscribe")
        with pytest.raises(JsonRpcError):
            await sub.__aenter__()
        assert sub.state is SubscriptionState.CLOSED
        assert rpc._subscriptions == set()


@pytest.mark.regression
async def test_resubscribing_to_a_slow_server_leaves_no_orphan_subscriptions(
    rpc_server: JsonRpcServer,
) -> None:
    """A resubscribe that timed out is sent again, and the server answers both.

    Before: the late answer (a live server subscription) was only counted;
    every retry left one on the server, notifying for ever, unmatched.
    """
    async with (
        pool_for(rpc_server) as pool,
        pool.json_rpc(request_timeout=0.1) as rpc,
    ):
        async with rpc.subscribe("subscribe", unsubscribe="unsubscribe") as sub:
            rpc_server.subscribe_delay = 0.25  # the server is slow right after a restart
            await rpc_server.close_connections()
            await asyncio.sleep(0.8)  # resubscribe requests time out and are sent again
            rpc_server.subscribe_delay = 0.0
            async with asyncio.timeout(2.0):
                while sub.state is not SubscriptionState.ACTIVE:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # every late answer is in
            assert rpc_server.subscribe_requests > 2  # it did time out and retry
            await rpc_server.notify("tick")
            assert await anext(sub) == "tick"
            await asyncio.sleep(0.05)
            assert rpc.stats().unmatched == 0, "notifications of orphan subscriptions"
        await asyncio.sleep(0.05)
        assert rpc_server.subscriptions == {}, "subscriptions left on the server"


async def test_a_subscribe_cancelled_in_flight_leaves_no_subscription_on_the_server(
    rpc_server: JsonRpcServer,
) -> None:
    rpc_server.subscribe_delay = 0.1
    async with pool_for(rpc_server) as pool, pool.json_rpc() as rpc:
        entering = asyncio.create_task(
            rpc.subscribe("subscribe", unsubscribe="unsubscribe").__aenter__()
        )
        await eventually(lambda: rpc_server.subscribe_requests == 1)
        entering.cancel()
        with pytest.raises(asyncio.CancelledError):
            await entering
        await eventually(lambda: rpc.stats().late_replies == 1)
        await eventually(lambda: rpc_server.unsubscribe_requests == 1)
        assert rpc_server.subscriptions == {}
        assert rpc.stats().unmatched == 0


async def test_a_subscription_left_while_resubscribing_is_unsubscribed_once_answered(
    rpc_server: JsonRpcServer,
) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc(request_timeout=2.0) as rpc:
        async with rpc.subscribe("subscribe", unsubscribe="unsubscribe") as sub:
            rpc_server.subscribe_delay = 0.2
            await rpc_server.close_connections()
            await eventually(lambda: rpc_server.subscribe_requests == 2)  # resubscribing
            assert sub.state is SubscriptionState.RESUBSCRIBING
        assert sub.state is SubscriptionState.CLOSED  # type: ignore[comparison-overlap]
        await eventually(lambda: rpc_server.unsubscribe_requests == 1)
        assert rpc_server.subscriptions == {}
        assert sub.gaps == []  # never restored: its user had left


async def test_leaving_a_subscription_on_an_error_unsubscribes_without_masking_it(
    rpc_server: JsonRpcServer,
) -> None:
    rpc_server.unsubscribe_delay = 0.3  # longer than the request timeout
    async with pool_for(rpc_server) as pool, pool.json_rpc(request_timeout=0.1) as rpc:
        with pytest.raises(ZeroDivisionError) as raised:
            async with rpc.subscribe("subscribe", unsubscribe="unsubscribe"):
                1 / 0  # noqa: B018
        assert raised.value.__context__ is None
        await eventually(lambda: rpc_server.subscriptions == {})
        assert rpc_server.unsubscribe_requests == 1


async def test_leaving_a_subscription_normally_waits_for_its_unsubscribe(
    rpc_server: JsonRpcServer,
) -> None:
    rpc_server.unsubscribe_delay = 0.3
    async with pool_for(rpc_server) as pool, pool.json_rpc(request_timeout=0.1) as rpc:
        with pytest.raises(RequestTimeoutError):
            async with rpc.subscribe("subscribe", unsubscribe="unsubscribe"):
                pass
        assert rpc_server.unsubscribe_requests == 1


async def test_a_subscription_whose_pool_closed_ends_with_unavailable(
    rpc_server: JsonRpcServer,
) -> None:
    async with (
        pool_for(rpc_server) as pool,
        pool.json_rpc() as rpc,
        rpc.subscribe("subscribe") as sub,
    ):
        await pool.close_all()
        async with asyncio.timeout(1.0):
            with pytest.raises(ConnectionPoolUnavailableError):
                await anext(sub)
        assert sub.state is SubscriptionState.CLOSED
        with pytest.raises(ConnectionPoolUnavailableError):
            await rpc.call("echo", [1])


async def test_against_aiohttp_a_burst_right_behind_the_subscribe_answer_is_all_delivered() -> None:
    """A server that is not websockets: aiohttp frames and batches its writes its own way."""
    async with (
        AiohttpJsonRpcServer().running() as server,
        WebsocketConnectionPool(server.uri, acquire_timeout=1.0) as pool,
        pool.json_rpc(connections=2) as rpc,
    ):
        assert await asyncio.gather(*(rpc.call("echo", [n]) for n in range(100))) == [
            [n] for n in range(100)
        ]
        async with rpc.subscribe("subscribe", [200]) as sub:
            assert [await anext(sub) for _ in range(200)] == list(range(200))
        assert rpc.stats().unmatched == 0


# -- found in the review of late answers and leaving subscriptions (fixed; docstrings say what)


class StallingServer(JsonRpcServer):
    """A JSON-RPC server whose event loop (the test's own) stalls right after a subscribe answer.

    The stall blocks the loop right after the answer is written, in the same
    iteration: in the next one, the answer's bytes and every timer that ran out
    during the stall are ready together, the bytes first. The client's reader
    takes the answer inside ``data_received`` and resolves the caller's future;
    the outer timeout then cancels the caller before it has run again (a GC
    pause or a CPU-bound callback does the same).
    """

    stall: float = 0.0

    async def _answer(self, conn: Any, request: dict[str, Any]) -> None:
        await super()._answer(conn, request)
        if request.get("method") == "subscribe" and self.stall:
            time.sleep(self.stall)  # noqa: ASYNC251  (the stall is the point)


@pytest.mark.regression
async def test_a_subscribe_answered_then_cancelled_before_it_resumed_leaves_no_orphan() -> None:
    """Before the fix: _jsonrpc.py:Subscription.__aenter__/JsonRpcClient._subscribe: a subscribe
    answered (bound in the reader) whose caller is cancelled before it runs again ends the
    subscription without unsubscribing: the server's subscription is left behind
    """
    server = StallingServer()
    server.stall = 0.4
    async with (
        server.running(),
        WebsocketConnectionPool(server.uri, acquire_timeout=1.0) as pool,
        pool.json_rpc(request_timeout=2.0) as rpc,
    ):
        subscription = rpc.subscribe("subscribe", unsubscribe="unsubscribe")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):  # the caller's own deadline, within the stall
                await subscription.__aenter__()
        assert subscription.state is SubscriptionState.CLOSED
        # The order this test is about: answered first, then cancelled (else it proves nothing).
        assert [r.trigger for r in rpc.history if "/req-" in r.connection_id] == [
            "send",
            "answer",
        ], rpc.history
        await eventually(lambda: server.subscriptions == {})


@pytest.mark.regression
async def test_leaving_a_subscription_cancelled_while_its_unsubscribe_waits_leaves_no_orphan(
    rpc_server: JsonRpcServer,
) -> None:
    """Before the fix: _jsonrpc.py:Subscription.__aexit__: leaving normally awaits the
    unsubscribe; cancelled while that request waits for room, it is never sent and nothing
    sends it later: the server's subscription is left behind, notifying, counted unmatched
    """
    async with (
        pool_for(rpc_server) as pool,
        pool.json_rpc(connections=1, max_in_flight=1, request_timeout=2.0) as rpc,
    ):
        busy, leaving = await leave_behind_a_busy_call(rpc, 0.2)
        leaving.cancel()  # e.g. an asyncio.timeout() around the whole block runs out
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert await busy == "busy"
        await eventually(lambda: rpc_server.subscriptions == {})


async def test_an_id_that_python_calls_equal_answers_no_call(rpc_server: JsonRpcServer) -> None:
    async with pool_for(rpc_server) as pool, pool.json_rpc() as rpc:
        assert await rpc.call("true_id", ["mine"]) == ["mine"]  # call 1; a reply with id true first
        assert rpc.stats().unmatched == 1


async def test_a_second_task_reading_a_subscription_is_refused(rpc_server: JsonRpcServer) -> None:
    async with (
        pool_for(rpc_server) as pool,
        pool.json_rpc() as rpc,
        rpc.subscribe("subscribe") as sub,
    ):
        first = asyncio.create_task(anext(sub))
        await asyncio.sleep(0.01)
        with pytest.raises(ConnectionBusyError, match="another task"):
            await anext(sub)
        await rpc_server.notify("one")
        assert await first == "one"
