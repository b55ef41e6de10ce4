"""Bounded state under floods, limited before state is created: thousands of distinct
requests over UDP from a test socket leave the transaction table, the per-source limiter
and the call table bounded, and a legitimate caller still gets through; TCP connections are
capped in all and per source, and idle ones are closed unless a call's signalling uses them."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import pytest
from prometheus_client import REGISTRY

from tests.sip.test_endpoint import Peer, ack, answered, finals, in_dialog, invite
from voicebot.sip.access import ConnectionLimiter, SourceLimiter
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipResponse, StreamParser


def counted(kind: str) -> float:
    return REGISTRY.get_sample_value("voicebot_sip_messages_total", {"kind": kind}) or 0.0


def request(method: str, n: int, to_tag: str = "") -> bytes:
    call_id = f"flood-{method}-{n}-{secrets.token_hex(3)}"
    return (f"{method} sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK{call_id}\r\n"
            f"From: <sip:x@127.0.0.1>;tag=f{n}\r\nTo: <sip:bank@127.0.0.1>{to_tag}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_per_source_setups_are_limited_and_the_table_of_sources_bounded() -> None:
    limiter = SourceLimiter(per_s=2, max_sources=100)
    assert [limiter.take("198.51.100.1", 0.0) for _ in range(4)] == [True, True, False, False]
    assert limiter.take("198.51.100.2", 0.0)  # another source has its own setups
    assert limiter.take("198.51.100.1", 1.0)  # refilled
    for i in range(5000):  # a flood from many addresses
        limiter.take(f"10.{i // 250}.{i % 250}.1", 2.0 + i / 1000)
    assert len(limiter.buckets) == 100
    assert SipConfig(max_setups_per_s=10).setups_per_source_per_s == 20  # one trunk, digest: two INVITEs a call
    assert SipConfig(max_setups_per_source_per_s=3).setups_per_source_per_s == 3


def test_tcp_connections_are_capped_in_all_and_per_source() -> None:
    limits = ConnectionLimiter(max_total=3, max_per_source=2)
    assert limits.admit("a") and limits.admit("a") and not limits.admit("a")
    assert limits.admit("b") and not limits.admit("c")  # three in all
    limits.release("a")
    assert limits.admit("c") and limits.open == {"a": 1, "b": 1, "c": 1}
    for ip in ("a", "b", "c", "c", "nobody"):
        limits.release(ip)
    assert limits.total == 0 and limits.open == {}


async def test_a_udp_flood_leaves_every_table_bounded_and_a_real_caller_gets_through() -> None:
    legs = []
    config = SipConfig(port=0, max_calls=5, max_transactions=300, max_setups_per_s=50, max_setups_per_source_per_s=20,
                       allowed_networks=["127.0.0.2/32"], credentials={"trunk1": "pw"})  # 127.0.0.1: challenged
    ep = SipEndpoint(config, lambda leg: legs.append(leg) or "call")
    await ep.start()
    flooder = Peer(ep.config.port)
    flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # it never reads its answers
    before = {k: counted(k) for k in ("rate_limited_source", "overload_dropped", "options", "invite", "bye", "cancel")}
    try:
        sent, started = 0, time.monotonic()
        for n in range(1200):  # 4800 distinct requests
            for data in (request("INVITE", n), request("OPTIONS", n), request("BYE", n, ";tag=guess"),
                         request("CANCEL", n)):
                flooder.sock.sendto(data, ("127.0.0.1", ep.config.port))
                sent += 1
            if n % 5 == 0:  # let the endpoint read, one datagram a turn of the loop (else the kernel drops most)
                for _ in range(30):
                    await asyncio.sleep(0)
                assert len(ep.transactions.table) <= 300
        await asyncio.sleep(0.3)
        took = time.monotonic() - started
        table = ep.transactions.table
        assert len(table) <= 300
        assert sum(1 for tx in table.values() if not tx.is_invite) <= 150  # OPTIONS: half the table at most
        assert not any(tx.is_invite for tx in table.values())  # challenged INVITEs kept nothing
        assert len(ep.source_setups.buckets) == 1 and ep.calls == {} and ep._answering == set()
        came = {k: counted(k) - v for k, v in before.items()}  # (the kernel drops some of a flood)
        assert sum(came[k] for k in ("options", "invite", "bye", "cancel")) > 1500
        assert came["invite"] - came["rate_limited_source"] <= 20 + 20 * took  # a burst, then 20 a second: 401
        assert came["overload_dropped"] >= came["options"] - 150

        caller = Peer(ep.config.port, host="127.0.0.2")  # the trunk, on another address
        await caller.send(invite("real1"))
        ok = answered(await caller.responses(0.5))
        await caller.send(ack("real1", ok))
        await asyncio.sleep(0.3)
        assert len(legs) == 1
        await caller.send(in_dialog("BYE", "real1", ok, 2))  # its BYE gets a transaction, full table or not
        assert finals([r for r in await caller.responses(0.5) if r.cseq[1] == "BYE"]) == [200]
        assert "real1" not in ep.calls
    finally:
        await ep.stop()


async def test_floods_from_many_addresses_are_bounded_too() -> None:
    ep = SipEndpoint(SipConfig(port=0, max_transactions=200, max_setups_per_source_per_s=1,
                               allowed_networks=["127.0.0.200/32"], credentials={"trunk1": "pw"}), lambda leg: "x")
    ep.source_setups.max_sources = 16
    await ep.start()
    peers = [Peer(ep.config.port, host=f"127.0.0.{10 + i}") for i in range(40)]
    try:
        for n in range(10):
            for peer in peers:
                await peer.send(request("INVITE", n))
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert len(ep.source_setups.buckets) <= 16 and len(ep.transactions.table) <= 200
        statuses = {r.status for peer in peers for r in await peer.responses(0)}
        assert statuses and statuses <= {401, 503}  # (more sources than it keeps: each meets the global limits)
    finally:
        await ep.stop()


# ---------------------------------------------------------------------------------- TCP


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
        return True
    except asyncio.TimeoutError:
        return False
    except ConnectionError:
        return True


def options(n: int) -> bytes:
    return (f"OPTIONS sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp{n}"
            f"{secrets.token_hex(3)}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: tcp{n}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()


async def answer_over(reader: asyncio.StreamReader, timeout: float = 3.0) -> SipResponse:
    parser = StreamParser()
    while True:
        messages = parser.feed(await asyncio.wait_for(reader.read(65536), timeout))
        if messages:
            assert isinstance(messages[0], SipResponse)
            return messages[0]


@pytest.fixture
async def tcp_endpoint():
    legs = []
    ep = SipEndpoint(SipConfig(port=0, tcp_max_connections=5, tcp_max_per_source=3, tcp_idle_timeout_s=0.6),
                     lambda leg: legs.append(leg) or "call")
    ep.legs = legs  # type: ignore[attr-defined]
    await ep.start()
    yield ep
    await ep.stop()


async def test_tcp_connections_beyond_the_caps_are_closed_at_once(tcp_endpoint) -> None:
    port = tcp_endpoint.config.port
    mine = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    assert await closed_by_server(mine[3][0], 2.0)  # a fourth from one address
    for i, (reader, writer) in enumerate(mine[:3]):
        writer.write(options(i))
        assert (await answer_over(reader)).status == 200
    others = [await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + i}", 0)) for i in range(3)]
    assert not await closed_by_server(others[0][0], 0.3) and not await closed_by_server(others[1][0], 0.1)
    assert await closed_by_server(others[2][0], 2.0)  # a sixth in all
    for _, writer in mine + others:
        writer.close()


async def test_idle_tcp_connections_are_closed_unless_a_call_uses_them(tcp_endpoint) -> None:
    port = tcp_endpoint.config.port
    quiet = await asyncio.open_connection("127.0.0.1", port)
    slow = await asyncio.open_connection("127.0.0.1", port)
    slow[1].write(options(1)[:50])  # half a message, and nothing more
    calling = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = calling
    writer.write(invite("tcp-call").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    parser, ok = StreamParser(), None
    while ok is None:
        for message in parser.feed(await asyncio.wait_for(reader.read(65536), 3)):
            if isinstance(message, SipResponse) and message.status == 200:
                ok = message
    writer.write(ack("tcp-call", ok).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    assert await closed_by_server(quiet[0], 4.0) and await closed_by_server(slow[0], 4.0)
    assert not await closed_by_server(reader, 1.5)  # well past the idle timeout: the call needs it
    assert len(tcp_endpoint.legs) == 1
    writer.write(in_dialog("BYE", "tcp-call", ok, 2).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    bye = await answer_over(reader)
    assert (bye.status, bye.cseq[1]) == (200, "BYE")
    assert await closed_by_server(reader, 4.0)  # no call on it any more: idle, and closed
    assert tcp_endpoint.transport.connections.total == 0
    writer.close()

