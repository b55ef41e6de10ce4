"""SIP message parsing with bytes: the ordinary, the odd-but-valid (RFC 4475 style), the broken."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.message import (SipParseError, SipRequest, SipResponse, StreamParser, parse, parse_name_addr,
                                  parse_via)

INVITE = (
    "INVITE sip:bank@127.0.0.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;rport\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice Caller" <sip:+15551230000@127.0.0.1:5070>;tag=abc\r\n'
    "To: <sip:bank@127.0.0.1:5060>\r\n"
    "Call-ID: 1-2-3@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice@127.0.0.1:5070>\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: 4\r\n"
    "\r\n"
    "v=0\n"
)


def test_parses_an_invite() -> None:
    msg = parse(INVITE.encode())
    assert isinstance(msg, SipRequest) and msg.method == "INVITE" and msg.uri == "sip:bank@127.0.0.1:5060"
    assert msg.cseq == (1, "INVITE") and msg.call_id == "1-2-3@127.0.0.1" and msg.body == b"v=0\n"
    sender = parse_name_addr(msg.headers.get("From") or "")
    assert sender.display == "Alice Caller" and sender.tag == "abc" and sender.uri.startswith("sip:+1555")
    via = parse_via(msg.headers.get_all("Via")[0])
    assert (via.transport, via.host, via.port, via.branch) == ("UDP", "127.0.0.1", 5070, "z9hG4bK-1")
    assert "rport" in via.params and via.params["rport"] is None


def test_round_trip_recomputes_content_length() -> None:
    msg = parse(INVITE.encode())
    msg.body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    again = parse(msg.encode())
    assert again.body == msg.body and again.headers.get("Content-Length") == str(len(msg.body))


def test_odd_but_valid_forms() -> None:
    odd = (
        "OPTIONS sip:bank@127.0.0.1 SIP/2.0\n"                      # bare LF line ends
        "v: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-x,\n"
        "  SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK-y\n"      # folded, two Vias, IPv6
        "f:   <sip:a@b>;tag=1\n"                                   # compact forms, odd spacing
        "t: sip:bank@127.0.0.1\n"
        "i: odd-call\n"
        "cSeQ:  7   options\n"                                     # case and extra spaces
        "X-Unknown-Extension: whatever ; x=\"a,b\"\n"
        "l: 0\n\n"
    )
    msg = parse(odd.encode())
    assert isinstance(msg, SipRequest) and msg.cseq == (7, "OPTIONS") and msg.call_id == "odd-call"
    vias = [parse_via(v) for v in msg.headers.get_all("Via")]
    assert [(v.transport, v.host, v.port) for v in vias] == [("UDP", "10.0.0.1", None), ("TCP", "2001:db8::1", 5061)]
    assert msg.headers.get("x-unknown-extension") == 'whatever ; x="a,b"'


def test_extra_bytes_after_content_length_are_discarded() -> None:
    msg = parse(INVITE.replace("Content-Length: 4", "Content-Length: 2").encode())
    assert msg.body == b"v="


def test_response() -> None:
    raw = ("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=9\r\n"
           "From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    msg = parse(raw.encode())
    assert isinstance(msg, SipResponse) and msg.status == 180 and msg.reason == "Ringing"


@pytest.mark.parametrize("mutate, status", [
    (lambda s: s.replace("Content-Length: 4", "Content-Length: 400"), 400),     # body too short
    (lambda s: s.replace("Content-Length: 4", "Content-Length: -1"), 400),
    (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400),                # method mismatch
    (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: x INVITE"), 400),
    (lambda s: s.replace("Call-ID: 1-2-3@127.0.0.1\r\n", ""), 400),            # mandatory header
    (lambda s: s.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia", 1), 505),          # version
    (lambda s: s.replace("Max-Forwards: 70", "Max-Forwards: 9999"), 400),
    (lambda s: s.replace("Max-Forwards: 70", "Max Forwards 70"), 400),          # not a header line
    (lambda s: s.split("\r\n\r\n")[0], 400),                                     # truncated: no blank line
    (lambda s: s.replace("To: <sip:bank", "To: " + "x" * 9000 + " <sip:bank"), 513),
])
def test_broken_messages_name_their_status(mutate, status: int) -> None:
    with pytest.raises(SipParseError) as exc:
        parse(mutate(INVITE).encode())
    assert exc.value.status == status


def test_huge_and_binary_input() -> None:
    with pytest.raises(SipParseError) as exc:
        parse(b"INVITE " + b"A" * 70000)
    assert exc.value.status == 513
    with pytest.raises(SipParseError):
        parse(b"\x00\xff\xfe garbage \r\n\r\n")


def test_stream_parser_frames_by_content_length() -> None:
    parser = StreamParser()
    data = INVITE.encode() * 2
    first = parser.feed(data[:100])
    assert first == []
    messages = parser.feed(data[100:])
    assert [m.method for m in messages] == ["INVITE", "INVITE"]  # type: ignore[union-attr]
    broken = StreamParser()
    assert broken.feed(INVITE.encode() + INVITE.replace("Content-Length: 4\r\n", "").encode()) != []
    assert broken.error is not None and broken.feed(INVITE.encode()) == []  # framing lost: stop


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_arbitrary_bytes_never_escape_as_other_errors(data: bytes) -> None:
    try:
        parse(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(INVITE)), st.binary(max_size=64))
def test_fuzz_mutated_invites(cut: int, noise: bytes) -> None:
    raw = INVITE.encode()
    try:
        parse(raw[:cut] + noise + raw[cut:])
    except SipParseError:
        pass
