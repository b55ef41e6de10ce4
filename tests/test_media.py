"""EdgeStream's hand-over (retain, reopen, release) and the relay that bridges two streams."""

from __future__ import annotations

import asyncio

import pytest

from voicebot.media import AudioChunk, Dtmf, EdgeStream, relay


class Edge(EdgeStream):
    def __init__(self) -> None:
        super().__init__(8000)
        self.transport_released = 0

    async def _release(self) -> None:
        self.transport_released += 1


async def drain(stream: EdgeStream) -> list:
    return [event async for event in stream.events()]


async def test_a_retained_close_keeps_the_media_for_the_next_user() -> None:
    edge = Edge()
    edge.retain = lambda reason: reason.startswith("transfer:")
    edge.put(AudioChunk(b"\1\0" * 160, 8000))
    await edge.write(b"\2\0" * 800, 8000)
    await edge.close("transfer:general")
    assert edge.closed and edge.close_reason == "transfer:general" and edge.transport_released == 0
    assert await drain(edge) == []  # the bot's reader ends at once
    edge.reopen()
    assert not edge.closed and edge.close_reason is None
    assert edge.playout().pending_ms == 0  # nothing stale plays to the next user
    edge.put(Dtmf("5"))
    reader = asyncio.ensure_future(drain(edge))
    await asyncio.sleep(0.01)
    await edge.close("hangup:completed")
    assert await reader == [Dtmf("5")]
    assert edge.transport_released == 1 and edge.released
    with pytest.raises(RuntimeError):
        edge.reopen()


async def test_release_frees_a_retained_stream_once() -> None:
    edge = Edge()
    edge.retain = lambda reason: True
    await edge.close("transfer:general")
    await edge.release()
    await edge.release()
    await edge.close("again")
    assert edge.transport_released == 1 and edge.close_reason == "transfer:general"


async def test_an_old_reader_never_takes_the_next_users_events() -> None:
    edge = Edge()
    edge.retain = lambda reason: True
    old = edge.events()
    edge.put(Dtmf("1"))
    assert await old.__anext__() == Dtmf("1")
    await edge.close("transfer:general")
    edge.reopen()
    edge.put(Dtmf("2"))
    with pytest.raises(StopAsyncIteration):
        await old.__anext__()
    new = edge.events()
    assert await new.__anext__() == Dtmf("2")


async def test_relay_carries_audio_both_ways_until_one_side_leaves() -> None:
    caller, agent = Edge(), Edge()
    bridge = asyncio.ensure_future(relay(caller, agent))
    caller.put(AudioChunk(b"\1\0" * 160, 8000))
    agent.put(AudioChunk(b"\2\0" * 80, 16000))  # resampled to the caller's rate on the way
    caller.put(Dtmf("3"))  # digits are not audio: not played to the agent
    await asyncio.sleep(0.05)
    assert agent.output.pull() == b"\1\0" * 160
    assert caller.playout().pending_ms == pytest.approx(5, abs=1)
    await agent.close("caller_bye")
    assert await asyncio.wait_for(bridge, 1) == "b"
    assert not caller.closed  # the other side is the edge's to end


async def test_relay_cuts_back_audio_that_piles_up() -> None:
    caller, agent = Edge(), Edge()
    bridge = asyncio.ensure_future(relay(caller, agent, max_lag_ms=100))
    for _ in range(20):  # 400 ms arrive while the agent side plays nothing
        caller.put(AudioChunk(b"\1\0" * 160, 8000))
    await asyncio.sleep(0.05)
    assert agent.playout().pending_ms <= 120
    await caller.close("caller_bye")
    assert await asyncio.wait_for(bridge, 1) == "a"


async def test_relay_passes_digits_to_an_edge_that_can_key_them() -> None:
    class Keypad(Edge):
        def __init__(self) -> None:
            super().__init__()
            self.keyed: list[str] = []

        def send_dtmf(self, digit: str) -> bool:
            self.keyed.append(digit)
            return True

    caller, agent = Edge(), Keypad()
    bridge = asyncio.ensure_future(relay(caller, agent))
    caller.put(Dtmf("1"))
    caller.put(Dtmf("#"))
    await asyncio.sleep(0.05)
    assert agent.keyed == ["1", "#"]
    await caller.close("caller_bye")
    await bridge
