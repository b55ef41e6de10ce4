"""Only the parties of a call can touch it, over real UDP: while a call is up, a second socket
that knows its Call-ID sends BYEs, re-INVITEs, ACKs and CANCELs with the wrong tags (or the
right tags from another host), and every one is refused in protocol and changes nothing; the
real caller's requests still work."""

from __future__ import annotations

import asyncio

import pytest

from tests.sip.test_endpoint import SDP, Peer, ack, answered, finals, in_dialog, invite, waiting
from voicebot.legs import CallerLeg
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipResponse


@pytest.fixture
async def endpoint():
    legs: list[CallerLeg] = []

    def start_call(leg: CallerLeg) -> str:
        legs.append(leg)
        return f"call-{len(legs)}"

    ep = SipEndpoint(SipConfig(port=0, max_calls=5, answer_after_s=0), start_call)
    await ep.start()
    ep.legs = legs  # type: ignore[attr-defined]
    yield ep
    await ep.stop()


async def call_up(ep: SipEndpoint, caller: Peer, call_id: str) -> SipResponse:
    """INVITE, 200, ACK: a call in progress, handed to its owner; the 200."""
    await caller.send(invite(call_id))
    ok = answered(await caller.responses(0.5))
    await caller.send(ack(call_id, ok))
    for _ in range(50):
        if ep.calls[call_id].started:
            return ok
        await asyncio.sleep(0.05)
    raise AssertionError("the call never started")


def untouched(ep: SipEndpoint, call_id: str, remote: tuple[str, int]) -> bool:
    call = ep.calls.get(call_id)
    return (call is not None and call.live and not call.rtp.closed and call.rtp.signalled == remote
            and call.dialog.state == "confirmed")


async def test_a_bye_or_reinvite_with_the_wrong_tags_gets_481_and_the_call_goes_on(endpoint) -> None:
    caller, stranger = Peer(endpoint.config.port), Peer(endpoint.config.port)
    ok = await call_up(endpoint, caller, "s1")
    ours = (ok.headers.get("To") or "").split(";tag=")[1]
    media = endpoint.calls["s1"].rtp.signalled
    moved = SDP.format(port=41234)
    forged = [
        in_dialog("BYE", "s1", ok, 2, from_tag="guessed"),                            # not the caller's tag
        in_dialog("BYE", "s1", ok, 2, to="<sip:bank@127.0.0.1>;tag=guessed"),          # not our tag
        in_dialog("BYE", "s1", ok, 2, to="<sip:bank@127.0.0.1>"),                      # no To tag at all
        in_dialog("BYE", "s1", ok, 2).replace(b";tag=ts1", b""),                       # no From tag
        in_dialog("BYE", "s1", ok, 2, from_tag=ours, to=f"<sip:+1555@127.0.0.1>;tag=ts1"),  # tags swapped
        in_dialog("INVITE", "s1", ok, 2, body=moved, from_tag="guessed"),              # re-INVITE moving media
        in_dialog("INVITE", "s1", ok, 2, body=moved, to="<sip:bank@127.0.0.1>;tag=guessed"),
        in_dialog("NOTIFY", "s1", ok, 2, from_tag="guessed"),
    ]
    for data in forged:
        await stranger.send(data)
        assert finals(await stranger.responses(0.3)) == [481], data[:60]
        assert untouched(endpoint, "s1", media)
    assert not [d for d in waiting(caller.sock) if d.startswith(b"BYE ")]  # nor did anything end it our side
    [leg] = endpoint.legs
    await caller.send(in_dialog("BYE", "s1", ok, 2))  # the caller's own BYE still ends it
    assert [r.status for r in await caller.responses(0.3) if r.cseq[1] == "BYE"] == [200]
    await asyncio.wait_for(leg.stream.wait_closed(), 2)
    assert leg.stream.close_reason == "caller_bye" and "s1" not in endpoint.calls


async def test_a_media_move_is_only_taken_from_the_dialogs_peer(endpoint) -> None:
    caller, elsewhere = Peer(endpoint.config.port), Peer(endpoint.config.port, host="127.0.0.2")
    ok = await call_up(endpoint, caller, "s2")
    media = endpoint.calls["s2"].rtp.signalled
    reinvite = in_dialog("INVITE", "s2", ok, 2, body=SDP.format(port=41234))  # the dialog's tags: learnt by listening
    await elsewhere.send(reinvite)
    refused = await elsewhere.responses(0.3)
    assert finals(refused) == [403] and untouched(endpoint, "s2", media)
    await caller.send(in_dialog("INVITE", "s2", ok, 3, body=SDP.format(port=41234)))
    moved = [r for r in await caller.responses(0.3) if r.cseq[1] == "INVITE"]
    assert finals(moved) == [200] and endpoint.calls["s2"].rtp.signalled == ("127.0.0.1", 41234)


async def test_an_offerless_reinvites_answer_is_only_taken_from_the_peer(endpoint) -> None:
    caller, elsewhere = Peer(endpoint.config.port), Peer(endpoint.config.port, host="127.0.0.2")
    ok = await call_up(endpoint, caller, "s3")
    await caller.send(in_dialog("INVITE", "s3", ok, 2))  # no SDP: we offer, the ACK answers
    assert finals([r for r in await caller.responses(0.3) if r.cseq[1] == "INVITE"]) == [200]
    call = endpoint.calls["s3"]
    assert call.awaiting_answer
    await elsewhere.send(in_dialog("ACK", "s3", ok, 2, body=SDP.format(port=41000)))
    await asyncio.sleep(0.2)
    assert call.awaiting_answer and call.rtp.signalled == ("127.0.0.1", 40000)
    await caller.send(in_dialog("ACK", "s3", ok, 2, body=SDP.format(port=41002)))
    await asyncio.sleep(0.2)
    assert not call.awaiting_answer and call.rtp.signalled == ("127.0.0.1", 41002)


async def test_only_the_dialogs_ack_starts_the_call(endpoint) -> None:
    caller, stranger = Peer(endpoint.config.port), Peer(endpoint.config.port)
    await caller.send(invite("s4"))
    ok = answered(await caller.responses(0.5))
    await stranger.send(in_dialog("ACK", "s4", ok, 1, to="<sip:bank@127.0.0.1>;tag=guessed"))
    await stranger.send(in_dialog("ACK", "s4", ok, 1, from_tag="guessed"))
    await asyncio.sleep(0.3)
    assert endpoint.legs == [] and not endpoint.calls["s4"].started
    await caller.send(ack("s4", ok))
    await asyncio.sleep(0.3)
    assert len(endpoint.legs) == 1


async def test_a_new_invite_reusing_a_live_calls_call_id_is_refused(endpoint) -> None:
    caller, stranger = Peer(endpoint.config.port), Peer(endpoint.config.port)
    ok = await call_up(endpoint, caller, "s5")
    await stranger.send(invite("s5", branch="z9hG4bKother"))  # no To tag: not a re-INVITE
    assert finals(await stranger.responses(0.3)) == [482]
    assert untouched(endpoint, "s5", ("127.0.0.1", 40000)) and len(endpoint.calls) == 1
    await caller.send(in_dialog("BYE", "s5", ok, 2))
    assert finals([r for r in await caller.responses(0.3) if r.cseq[1] == "BYE"]) == [200]


async def test_a_request_older_than_the_dialogs_last_is_refused(endpoint) -> None:
    caller = Peer(endpoint.config.port)
    ok = await call_up(endpoint, caller, "s6")
    await caller.send(in_dialog("INVITE", "s6", ok, 5, body=SDP.format(port=40000)))
    assert finals([r for r in await caller.responses(0.3) if r.cseq[1] == "INVITE"]) == [200]
    await caller.send(in_dialog("ACK", "s6", ok, 5))
    await caller.send(in_dialog("BYE", "s6", ok, 4))  # a replay from before the re-INVITE
    assert finals([r for r in await caller.responses(0.3) if r.cseq[1] == "BYE"]) == [500] and "s6" in endpoint.calls
    await caller.send(in_dialog("BYE", "s6", ok, 6))
    assert finals([r for r in await caller.responses(0.3) if r.cseq[1] == "BYE"]) == [200]
    assert "s6" not in endpoint.calls


def cancel(call_id: str, branch: str | None = None, from_tag: str | None = None, cseq: int = 1,
           sent_by: str = "127.0.0.1:5999") -> bytes:
    """A CANCEL of ``invite(call_id)``; the arguments stand in what a stranger got wrong."""
    return (f"CANCEL sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {sent_by};branch={branch or 'z9hG4bK' + call_id}\r\n"
            f"From: <sip:+1555@127.0.0.1>;tag={from_tag or 't' + call_id}\r\nTo: <sip:bank@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq} CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


async def test_a_cancel_must_match_the_invites_transaction() -> None:
    ep = SipEndpoint(SipConfig(port=0, answer_after_s=2.0), lambda leg: "call")
    await ep.start()
    try:
        caller, stranger = Peer(ep.config.port), Peer(ep.config.port)
        await caller.send(invite("c1"))
        assert 180 in [r.status for r in await caller.responses(0.5)]
        for data in [cancel("c1", branch="z9hG4bKguess"), cancel("c1", from_tag="guessed"), cancel("c1", cseq=2),
                     cancel("c1", sent_by="127.0.0.9:5999")]:
            await stranger.send(data)
            assert finals(await stranger.responses(0.3)) == [481], data[:80]
        statuses: list[int] = []
        for _ in range(40):  # it rings on, and is answered
            responses = [r for r in await caller.responses(0.1) if r.cseq[1] == "INVITE"]
            statuses += [r.status for r in responses]
            if 200 in statuses:
                await caller.send(ack("c1", answered(responses)))
                break
        assert [s for s in statuses if s >= 200][:1] == [200]
        await caller.send(invite("c2"))
        assert 180 in [r.status for r in await caller.responses(0.5)]
        await caller.send(cancel("c2"))
        answers = [r for r in await caller.responses(0.5) if r.call_id == "c2"]
        assert sorted((r.cseq[1], r.status) for r in answers if r.status >= 200)[:2] == [("CANCEL", 200), ("INVITE", 487)]
        await asyncio.sleep(2.0)
        assert "c2" not in ep.calls and 200 not in [r.status for r in await caller.responses(0.1) if r.call_id == "c2"]
    finally:
        await ep.stop()
