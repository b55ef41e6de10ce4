"""The endpoint over real UDP on 127.0.0.1, with raw datagrams: hostile and odd input gets a
protocol answer or is dropped, and the endpoint keeps serving.  The call's owner is not under
test here: started calls (their ``CallerLeg``) are only recorded."""

from __future__ import annotations

import asyncio
import secrets
import socket

import pytest

from voicebot.legs import CallerLeg
from voicebot.sip.config import SipConfig
from voicebot.sip.dialog import response_to
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipResponse, parse

SDP = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")


def invite(call_id: str, body: str | None = None, extra: str = "", branch: str | None = None) -> bytes:
    body = SDP.format(port=40000) if body is None else body
    return (f"INVITE sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch={branch or 'z9hG4bK' + call_id}\r\n"
            f"From: <sip:+1555@127.0.0.1>;tag=t{call_id}\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:5999>\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def waiting(sock: socket.socket) -> list[bytes]:
    """Every datagram already waiting on a non-blocking socket."""
    out = []
    while True:
        try:
            out.append(sock.recv(65535))
        except BlockingIOError:
            return out


class Peer:
    """A UDP socket that talks to the endpoint; ``host`` another loopback address (127.0.0.2)
    stands in for another machine."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setblocking(False)
        self.target = ("127.0.0.1", port)

    async def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.target)

    async def responses(self, wait: float = 0.5) -> list[SipResponse]:
        await asyncio.sleep(wait)
        return [msg for msg in map(parse, waiting(self.sock)) if isinstance(msg, SipResponse)]


def finals(responses: list[SipResponse]) -> list[int]:
    """The final statuses, each once: over UDP a final answer to an INVITE is retransmitted
    every T1 until ACKed, and a slow test machine may wait long enough to see that."""
    out: list[int] = []
    for r in responses:
        if r.status >= 200 and r.status not in out:
            out.append(r.status)
    return out


@pytest.fixture
async def endpoint():
    started: list[tuple[str, str]] = []
    legs: list[CallerLeg] = []

    def start_call(leg: CallerLeg) -> str:
        started.append((leg.channel, leg.caller))
        legs.append(leg)
        return f"call-{len(started)}"

    ep = SipEndpoint(SipConfig(port=0, max_calls=3), start_call)
    await ep.start()
    ep.started = started  # type: ignore[attr-defined]
    ep.legs = legs  # type: ignore[attr-defined]
    yield ep
    await ep.stop()


async def test_invite_is_answered_with_sdp_and_ack_starts_the_call(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(invite("a1"))
    responses = await peer.responses()
    assert [r.status for r in responses][:3] == [100, 180, 200]
    answer = responses[2].body.decode()
    assert "m=audio" in answer and "a=rtpmap:0 PCMU/8000" in answer and "telephone-event/8000" in answer
    assert ";tag=" in (responses[2].headers.get("To") or "") and responses[2].headers.get("Contact")
    assert endpoint.started == []  # no media until the ACK
    await peer.send(ack("a1", responses[2]))
    await asyncio.sleep(0.2)
    assert endpoint.started == [("sip", "+1555")]
    [leg] = endpoint.legs
    assert leg.stream is endpoint.calls["a1"].rtp and endpoint.calls["a1"].record_id == "call-1"
    assert leg.details == {"trunk": "allowed", "source": f"127.0.0.1:{peer.sock.getsockname()[1]}",
                           "sip_call_id": "a1", "from": "<sip:+1555@127.0.0.1>;tag=ta1"}


@pytest.mark.parametrize("data, status", [
    (invite("b1", body="v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"), 488),               # SDP without media
    (invite("b2", body=SDP.format(port=40000).replace("RTP/AVP 0 101", "RTP/AVP 9")), 488),          # no G.711
    (invite("b3", extra="Require: 100rel, timer\r\n"), 420),
    (invite("b4").replace(b"application/sdp", b"text/plain"), 415),
    (invite("b5", body="nonsense"), 400),
    (invite("b6").replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),                                 # malformed
    (b"FOO sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKf\r\nFrom: <sip:a@b>;tag=1\r\n"
     b"To: <sip:c@d>\r\nCall-ID: f\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n", 501),
    (b"SUBSCRIBE sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKs\r\nFrom: <sip:a@b>;tag=1\r\n"
     b"To: <sip:c@d>\r\nCall-ID: s\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n", 405),
    (b"BYE sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKbye\r\nFrom: <sip:a@b>;tag=1\r\n"
     b"To: <sip:c@d>;tag=2\r\nCall-ID: nope\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n", 481),
])
async def test_protocol_correct_rejections(endpoint, data: bytes, status: int) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(data)
    responses = await peer.responses()
    assert finals(responses) == [status], [r.status for r in responses]
    assert endpoint.started == []


async def test_garbage_truncated_and_huge_datagrams_do_not_stop_the_endpoint(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    for junk in [b"\x00" * 10, b"\xff\xfe garbage", b"INVITE sip:x SIP/2.0\r\nVia: trunc", invite("c1")[:120],
                 b"INVITE " + b"A" * 60000, b"\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"]:
        await peer.send(junk)
    await peer.responses(0.3)
    await peer.send(b"OPTIONS sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKo\r\n"
                    b"From: <sip:a@b>;tag=1\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    assert [r.status for r in await peer.responses()] == [200]


async def test_call_limit_answers_503_with_retry_after(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    for i in range(5):  # max_calls is 3
        await peer.send(invite(f"flood{i}"))
    responses = await peer.responses(1.0)
    final = {r.call_id: r.status for r in responses if r.status >= 200}  # 2xx are retransmitted
    busy = [r for r in responses if r.status == 503]
    assert sorted(final.values()) == [200, 200, 200, 503, 503]
    assert all(r.headers.get("Retry-After") for r in busy)


async def test_retransmitted_invite_is_absorbed(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(invite("r1"))
    await peer.send(invite("r1"))
    responses = await peer.responses()
    assert len([r for r in responses if r.status == 200]) >= 1
    assert len(endpoint.calls) == 1


async def test_sources_outside_the_allow_list_get_403() -> None:
    ep = SipEndpoint(SipConfig(port=0, allowed_networks=["10.9.9.0/24"]), lambda leg: "x")
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("d1"))
        assert finals(await peer.responses()) == [403]
    finally:
        await ep.stop()


async def test_digest_authentication_for_callers_off_the_allow_list() -> None:
    from voicebot.sip.auth import digest_response, parse_digest

    ep = SipEndpoint(SipConfig(port=0, allowed_networks=["10.9.9.0/24"], credentials={"trunk1": "s3cret"}),
                     lambda leg: "x")
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("e1"))
        challenge = [r for r in await peer.responses() if r.status == 401]
        assert challenge, "expected a 401 challenge"
        offers = challenge[0].headers.get_all("WWW-Authenticate")
        assert [parse_digest(o)["algorithm"] for o in offers] == ["SHA-256", "MD5"]
        nonce = parse_digest(offers[0])["nonce"]
        answer = digest_response("SHA-256", "trunk1", "voicebot", "s3cret", "INVITE", "sip:bank@127.0.0.1", nonce,
                                 "auth", "00000001", "xyz")
        header = (f'Authorization: Digest username="trunk1", realm="voicebot", nonce="{nonce}", '
                  f'uri="sip:bank@127.0.0.1", response="{answer}", algorithm=SHA-256, qop=auth, nc=00000001, '
                  f'cnonce="xyz"\r\n')
        await peer.send(invite("e1", extra=header, branch="z9hG4bKe1-2").replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"))
        assert 200 in [r.status for r in await peer.responses()]
        wrong = header.replace(answer, "0" * 64)
        await peer.send(invite("e2", extra=wrong))
        assert finals([r for r in await peer.responses() if r.call_id == "e2"]) == [403]
    finally:
        await ep.stop()


async def test_call_setup_rate_limit() -> None:
    ep = SipEndpoint(SipConfig(port=0, max_setups_per_s=2, max_calls=50), lambda leg: "x")
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        for i in range(5):
            await peer.send(invite(f"rate{i}"))
        final = {r.call_id: r.status for r in await peer.responses(0.8) if r.status >= 200}
        assert sorted(final.values()) == [200, 200, 503, 503, 503]
    finally:
        await ep.stop()


async def test_options_over_tcp(endpoint) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.config.port)
    request = (b"OPTIONS sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKtcp\r\n"
               b"From: <sip:a@b>;tag=1\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: tcp1\r\nCSeq: 1 OPTIONS\r\n"
               b"Content-Length: 0\r\n\r\n")
    writer.write(request[:40])  # split across segments: framing is by Content-Length
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(request[40:] + b"garbage that is not SIP\r\n\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 2)
    assert data.startswith(b"SIP/2.0 200 OK")
    writer.close()


def answered(responses: list[SipResponse]) -> SipResponse:
    """The endpoint's 200 to an INVITE among ``responses``."""
    return next(r for r in responses if r.status == 200 and r.cseq[1] == "INVITE")


def ack(call_id: str, ok: SipResponse, body: str = "") -> bytes:
    """The ACK for the 200 ``ok``: in its dialog, so with the To tag it gave."""
    return in_dialog("ACK", call_id, ok, 1, body=body, branch=f"z9hG4bKack{call_id}")


def in_dialog(method: str, call_id: str, ok: SipResponse, cseq: int, body: str = "", branch: str | None = None,
              from_tag: str | None = None, to: str | None = None) -> bytes:
    """A request from the caller of ``invite(call_id)`` in the dialog its 200 ``ok`` set up;
    ``from_tag`` and ``to`` stand in other tags."""
    content = f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}" if body else \
        "Content-Length: 0\r\n\r\n"
    return (f"{method} sip:voicebot@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5999;branch={branch or 'z9hG4bK' + secrets.token_hex(6)}\r\n"
            f"From: <sip:+1555@127.0.0.1>;tag={from_tag or 't' + call_id}\r\nTo: {to or ok.headers.get('To')}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{content}").encode()


async def test_delayed_offer_we_offer_in_the_200_and_the_ack_answers(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    media = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    media.bind(("127.0.0.1", 0))
    media.setblocking(False)
    offerless = invite("d1").split(b"Content-Type:")[0] + b"Content-Length: 0\r\n\r\n"
    await peer.send(offerless)
    ok = answered(await peer.responses())
    offer = ok.body.decode()
    assert "m=audio" in offer and "RTP/AVP 0 8 101" in offer and "telephone-event/8000" in offer
    answer = SDP.format(port=media.getsockname()[1]).replace("RTP/AVP 0 101", "RTP/AVP 8 101") + "a=rtpmap:8 PCMA/8000\r\n"
    await peer.send(ack("d1", ok, answer))
    await asyncio.sleep(0.3)
    assert endpoint.started == [("sip", "+1555")]
    rtp = endpoint.calls["d1"].rtp
    assert (rtp.sender.codec, rtp.remote, rtp.on_hold) == ("PCMA", media.getsockname(), False)
    packets = waiting(media)
    assert packets and all(p[1] & 0x7F == 8 for p in packets)  # PCMA, to where the ACK said
    media.close()


async def test_delayed_offer_without_an_answer_in_the_ack_is_hung_up(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(invite("d2").split(b"Content-Type:")[0] + b"Content-Length: 0\r\n\r\n")
    await peer.send(ack("d2", answered(await peer.responses())))
    await asyncio.sleep(0.3)
    assert any(r.startswith(b"BYE ") for r in waiting(peer.sock))
    assert endpoint.started == [] and "d2" not in endpoint.calls


async def test_our_bye_is_retransmitted_until_answered() -> None:
    def start_call(leg: CallerLeg) -> str:  # the owner hangs up a moment later
        asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(leg.end("hangup:completed")))
        return "call-bye"

    ep = SipEndpoint(SipConfig(port=0), start_call)
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("bye1"))
        await peer.send(ack("bye1", answered(await peer.responses(0.3))))
        await asyncio.sleep(1.4)  # the BYE, unanswered, then again after T1 and 2*T1
        byes = [parse(data) for data in waiting(peer.sock) if data.startswith(b"BYE ")]
        assert len(byes) >= 2 and len({b.cseq for b in byes}) == 1  # the same request, retransmitted
        assert 'text="hangup:completed"' in (byes[0].headers.get("Reason") or "")
        peer.sock.sendto(response_to(byes[0], 200).encode(), ("127.0.0.1", ep.config.port))
        await asyncio.sleep(1.2)
        assert not [d for d in waiting(peer.sock) if d.startswith(b"BYE ")]  # answered: no more
    finally:
        await ep.stop()


async def test_hang_up_frees_the_media_and_is_idempotent(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(invite("h1"))
    await peer.send(ack("h1", answered(await peer.responses(0.3))))
    await asyncio.sleep(0.2)
    [leg] = endpoint.legs
    await leg.end("hangup:completed")
    await leg.end("again")
    await asyncio.sleep(0.2)
    byes = [parse(d) for d in waiting(peer.sock) if d.startswith(b"BYE ")]
    assert len({b.cseq for b in byes}) == 1 and leg.stream.released and "h1" not in endpoint.calls


async def test_the_callers_bye_ends_the_owners_stream_even_a_retained_one(endpoint) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(invite("h2"))
    ok = answered(await peer.responses(0.3))
    await peer.send(ack("h2", ok))
    await asyncio.sleep(0.2)
    [leg] = endpoint.legs
    leg.stream.retain = lambda reason: True  # the owner keeps the media for a transfer
    reader = asyncio.ensure_future(leg.stream.wait_closed())
    await peer.send(in_dialog("BYE", "h2", ok, 2))
    assert [r.status for r in await peer.responses(0.3) if r.cseq[1] == "BYE"] == [200]
    await asyncio.wait_for(reader, 1)
    assert leg.stream.close_reason == "caller_bye" and leg.stream.released and "h2" not in endpoint.calls


async def test_a_call_nobody_can_take_is_hung_up_not_left_silent() -> None:
    class NoCapacity(Exception):
        pass

    def start_call(leg: CallerLeg) -> str:
        raise NoCapacity("all bots busy")

    ep = SipEndpoint(SipConfig(port=0), start_call)
    await ep.start()
    try:
        peer = Peer(ep.config.port)
        await peer.send(invite("nc1"))
        await peer.send(ack("nc1", answered(await peer.responses(0.3))))
        await asyncio.sleep(0.3)
        byes = [parse(d) for d in waiting(peer.sock) if d.startswith(b"BYE ")]
        assert byes and 'text="no_capacity"' in (byes[0].headers.get("Reason") or "")
        assert "nc1" not in ep.calls
    finally:
        await ep.stop()
