"""The outbound INVITE (bridged transfer's agent leg), sans-I/O: bytes and a fake clock."""

from __future__ import annotations

from voicebot.sip.message import SipRequest, SipResponse, parse
from voicebot.sip.sdp import build_offer, negotiate, parse_sdp
from voicebot.sip.uac import OutboundInvite

TARGET = "sip:agent@10.0.0.5:5070"


def invite(now: float = 0.0, transport: str = "UDP") -> OutboundInvite:
    return OutboundInvite.create(TARGET, "sip:voicebot@10.0.0.1", "sip:voicebot@10.0.0.1:5060", "10.0.0.1", 5060,
                                 build_offer("10.0.0.1", 40000, 7).encode(), now, transport=transport,
                                 extra=[("X-Voicebot-Queue", "general")])


def answer(inv: OutboundInvite, status: int, body: bytes = b"", record_route: tuple[str, ...] = ()) -> SipResponse:
    """The agent phone's response, parsed from the bytes it would send."""
    request = parse(inv.first())
    assert isinstance(request, SipRequest)
    lines = [f"SIP/2.0 {status} Whatever"] + [f"Via: {v}" for v in request.headers.get_all("Via")]
    lines += [f"From: {request.headers.get('From')}", f"To: {request.headers.get('To')};tag=agent1",
              f"Call-ID: {request.call_id}", "CSeq: 1 INVITE", "Contact: <sip:agent@10.0.0.5:5070;transport=udp>"]
    lines += [f"Record-Route: {r}" for r in record_route]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, SipResponse)
    return message


def test_the_invite_offers_g711_and_dtmf_and_carries_the_handoff() -> None:
    request = parse(invite().first())
    assert isinstance(request, SipRequest) and request.method == "INVITE" and request.uri == TARGET
    assert request.headers.get("X-Voicebot-Queue") == "general"
    assert ";tag=" in (request.headers.get("From") or "") and ";tag=" not in (request.headers.get("To") or "")
    chosen = negotiate(parse_sdp(request.body.decode()))
    assert (chosen.codec, chosen.dtmf_payload_type, chosen.remote_port) == ("PCMU", 101, 40000)


def test_udp_retransmits_until_a_provisional_then_waits() -> None:
    inv = invite()
    assert inv.tick(0.4) == []
    assert inv.tick(0.5) == [inv.first()]  # Timer A: T1
    assert inv.tick(1.2) == []
    assert inv.tick(1.5) == [inv.first()]  # then 2*T1
    assert inv.receive(answer(inv, 180)) == []
    assert inv.state == "proceeding" and inv.provisional == 180
    assert inv.tick(10.0) == []  # no more retransmissions once something came back


def test_tcp_never_retransmits() -> None:
    inv = invite(transport="TCP")
    assert inv.tick(5.0) == []


def test_nobody_answers_timer_b_gives_408() -> None:
    inv = invite()
    inv.tick(32.0)
    assert inv.outcome is not None and inv.outcome.status == 408 and inv.state == "terminated"


def test_2xx_is_acked_in_its_own_transaction_along_the_route() -> None:
    inv = invite()
    sdp = b"v=0\r\no=a 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"
    ok = answer(inv, 200, sdp, record_route=("<sip:p1.example;lr>", "<sip:p2.example;lr>"))
    [ack_bytes] = inv.receive(ok)
    ack = parse(ack_bytes)
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.cseq == (1, "ACK")
    assert ack.uri == "sip:agent@10.0.0.5:5070;transport=udp"  # the remote target from Contact
    assert ack.headers.get_all("Route") == ["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
    assert "agent1" in (ack.headers.get("To") or "")
    invite_branch = (parse(inv.first()).headers.get("Via") or "").split("branch=")[1]
    assert invite_branch not in (ack.headers.get("Via") or "")  # a new transaction
    assert inv.receive(ok) == [ack_bytes]  # a retransmitted 200 gets the same ACK again
    outcome = inv.outcome
    assert outcome is not None and outcome.status == 200 and outcome.answer == sdp and outcome.dialog is not None
    bye = outcome.dialog.request("BYE", "10.0.0.1", 5060)
    assert bye.uri == "sip:agent@10.0.0.5:5070;transport=udp" and bye.cseq == (2, "BYE")
    assert "agent1" in (bye.headers.get("To") or "") and bye.headers.get_all("Route")[0] == "<sip:p2.example;lr>"


def test_busy_is_acked_on_the_invite_branch() -> None:
    inv = invite()
    inv.receive(answer(inv, 180))
    [ack_bytes] = inv.receive(answer(inv, 486))
    ack = parse(ack_bytes)
    assert isinstance(ack, SipRequest) and ack.method == "ACK" and ack.uri == TARGET
    assert ack.headers.get("Via") == parse(inv.first()).headers.get("Via")  # same transaction
    assert inv.outcome is not None and inv.outcome.status == 486 and inv.outcome.dialog is None


def test_cancel_only_once_something_came_back() -> None:
    inv = invite()
    assert inv.cancel() is None  # §9.1: nothing provisional yet
    inv.receive(answer(inv, 180))
    cancel = parse(inv.cancel() or b"")
    assert isinstance(cancel, SipRequest) and cancel.method == "CANCEL" and cancel.cseq == (1, "CANCEL")
    assert cancel.headers.get("Via") == parse(inv.first()).headers.get("Via")
    assert inv.cancel() is None and inv.cancelled
    inv.receive(answer(inv, 487))
    assert inv.outcome is not None and inv.outcome.status == 487


def test_responses_to_other_methods_are_ignored() -> None:
    inv = invite()
    other = answer(inv, 200)
    other.headers.set("CSeq", "1 CANCEL")
    assert inv.receive(other) == [] and inv.outcome is None
