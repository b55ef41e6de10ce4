"""An outbound INVITE answering a trunk's digest challenge (RFC 3261 §22, RFC 8760), sans-I/O:
bytes in and out and a number for "now"; every answer is checked by the server side's own
checker, ``DigestAuthenticator.verify``."""

from __future__ import annotations

import pytest

from voicebot.sip.auth import DigestAuthenticator, parse_digest
from voicebot.sip.message import SipRequest, SipResponse, parse, parse_via, tag_of
from voicebot.sip.sdp import build_offer
from voicebot.sip.uac import Credentials, OutboundInvite

TARGET = "sip:+4930123456@trunk.example:5080;transport=udp"
USER, PASSWORD = "voicebot", "s3cret pass"
HEADER = {401: ("WWW-Authenticate", "Authorization"), 407: ("Proxy-Authenticate", "Proxy-Authorization")}


def invite(credentials: Credentials | None = Credentials(USER, PASSWORD), now: float = 0.0) -> OutboundInvite:
    return OutboundInvite.create(TARGET, "sip:+4940999@10.0.0.1", "sip:voicebot@10.0.0.1:5060", "10.0.0.1", 5060,
                                 build_offer("10.0.0.1", 40000, 7).encode(), now, display="+4940999",
                                 extra=[("P-Asserted-Identity", "<sip:+4940999@10.0.0.1>")], credentials=credentials)


def sent(data: bytes) -> SipRequest:
    message = parse(data)
    assert isinstance(message, SipRequest)
    return message


def response(request: SipRequest, status: int, headers: list[tuple[str, str]] = (), tag: str = "trunk1",
             body: bytes = b"") -> SipResponse:
    """What the trunk answers ``request`` with, parsed from the bytes it would send."""
    lines = [f"SIP/2.0 {status} Whatever"] + [f"Via: {v}" for v in request.headers.get_all("Via")]
    lines += [f"From: {request.headers.get('From')}", f"To: {request.headers.get('To')};tag={tag}",
              f"Call-ID: {request.call_id}", f"CSeq: {request.cseq[0]} INVITE"]
    lines += [f"{name}: {value}" for name, value in headers]
    if status == 200:
        lines.append("Contact: <sip:gw@10.0.0.9:5080>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    message = parse(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(message, SipResponse)
    return message


def challenge(server: DigestAuthenticator, status: int, request: SipRequest, qop: bool = True,
              extra: str = "") -> SipResponse:
    values = [v if qop else v.replace(', qop="auth"', "") for v in server.challenge()]
    return response(request, status, [(HEADER[status][0], v + extra) for v in values])


def answered_challenge(inv: OutboundInvite, server: DigestAuthenticator, status: int,
                       qop: bool = True, extra: str = "") -> tuple[SipRequest, SipRequest, SipRequest]:
    """Challenge the INVITE in flight: (the challenged INVITE, the ACK, the new INVITE)."""
    first = sent(inv.request.encode())
    out = inv.receive(challenge(server, status, first, qop, extra), now=1.0)
    assert len(out) == 2, out
    return first, sent(out[0]), sent(out[1])


@pytest.mark.parametrize("status", [401, 407])
@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
@pytest.mark.parametrize("qop", [True, False])
def test_the_answer_passes_the_servers_own_check(status: int, algorithm: str, qop: bool) -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD}, algorithms=(algorithm,))
    _, _, again = answered_challenge(invite(), server, status, qop)
    _, header = HEADER[status]
    other = HEADER[407 if status == 401 else 401][1]
    value = again.headers.get(header) or ""
    assert again.headers.get(other) is None
    params = parse_digest(value)
    assert params["algorithm"] == algorithm and params["uri"] == TARGET and params["username"] == USER
    assert ("qop" in params) is qop
    if qop:
        assert params["qop"] == "auth" and params["nc"] == "00000001" and len(params["cnonce"]) >= 8
    assert server.verify("INVITE", again.uri, value) == "ok"
    wrong = DigestAuthenticator("trunk.example", {USER: "other"}, algorithms=(algorithm,), key=server.key)
    assert wrong.verify("INVITE", again.uri, value) == "bad"  # the password really is in the hash


def test_the_new_invite_is_the_same_call_with_the_next_cseq_and_a_new_branch() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD})
    inv = invite()
    first, ack, again = answered_challenge(inv, server, 407)
    # the 407 is ACKed in its own (the first INVITE's) transaction
    assert ack.method == "ACK" and ack.uri == TARGET and ack.cseq == (1, "ACK")
    assert ack.headers.get("Via") == first.headers.get("Via") and tag_of(ack.headers.get("To")) == "trunk1"
    # the new INVITE: same Call-ID, From (and its tag), To without a tag, CSeq + 1, a new branch
    assert again.method == "INVITE" and again.uri == TARGET and again.cseq == (2, "INVITE")
    assert again.call_id == first.call_id and again.headers.get("From") == first.headers.get("From")
    assert again.headers.get("From", "").startswith('"+4940999" <sip:+4940999@10.0.0.1>;tag=')
    assert tag_of(again.headers.get("To")) is None
    old_branch = parse_via(first.headers.get("Via") or "").branch
    new_branch = parse_via(again.headers.get("Via") or "").branch
    assert new_branch != old_branch and new_branch.startswith("z9hG4bK")
    assert again.headers.get("P-Asserted-Identity") == "<sip:+4940999@10.0.0.1>" and again.body == first.body
    assert inv.cseqs == [1, 2] and inv.state == "calling" and inv.outcome is None


def test_the_opaque_is_echoed() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD}, algorithms=("MD5",))
    _, _, again = answered_challenge(invite(), server, 401, extra=', opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = again.headers.get("Authorization") or ""
    assert parse_digest(value)["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert server.verify("INVITE", again.uri, value) == "ok"


def test_the_topmost_challenge_it_can_answer_is_the_one_answered() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD}, algorithms=("MD5",))
    [md5] = server.challenge()
    sha512 = md5.replace("algorithm=MD5", "algorithm=SHA-512-256")
    inv = invite()
    first = sent(inv.request.encode())
    _, again_bytes = inv.receive(response(first, 401, [("WWW-Authenticate", sha512), ("WWW-Authenticate", md5)]))
    value = sent(again_bytes).headers.get("Authorization") or ""
    assert parse_digest(value)["algorithm"] == "MD5" and server.verify("INVITE", TARGET, value) == "ok"


def test_a_second_challenge_after_the_credentials_is_the_outcome() -> None:
    server = DigestAuthenticator("trunk.example", {USER: "the right one"})  # our password is wrong
    inv = invite()
    _, _, again = answered_challenge(inv, server, 401)
    assert server.verify("INVITE", again.uri, again.headers.get("Authorization")) == "bad"
    out = inv.receive(challenge(server, 401, again, extra=", stale=true"), now=1.1)
    assert len(out) == 1  # the ACK, and no third INVITE
    ack = sent(out[0])
    assert ack.method == "ACK" and ack.cseq == (2, "ACK") and ack.headers.get("Via") == again.headers.get("Via")
    assert inv.outcome is not None and inv.outcome.status == 401 and inv.state == "completed"
    assert inv.cseqs == [1, 2] and inv.tick(100.0) == []


def test_a_403_after_the_credentials_is_the_outcome() -> None:
    inv = invite()
    _, _, again = answered_challenge(inv, DigestAuthenticator("trunk.example", {USER: PASSWORD}), 407)
    [ack] = inv.receive(response(again, 403))
    assert sent(ack).cseq == (2, "ACK") and inv.outcome is not None and inv.outcome.status == 403


def test_without_credentials_a_challenge_is_the_outcome() -> None:
    inv = invite(credentials=None)
    first = sent(inv.first())
    [ack] = inv.receive(challenge(DigestAuthenticator("trunk.example", {USER: PASSWORD}), 407, first))
    assert sent(ack).method == "ACK" and inv.outcome is not None and inv.outcome.status == 407
    assert inv.cseqs == [1]


@pytest.mark.parametrize("value", [
    'Digest realm="trunk.example", nonce="abc", qop="auth-int"',  # only auth-int offered
    'Digest realm="trunk.example", nonce="abc", algorithm=SHA-512-256',
    'Digest realm="trunk.example"',  # no nonce
    'Basic realm="trunk.example"',
])
def test_a_challenge_it_cannot_answer_is_the_outcome(value: str) -> None:
    inv = invite()
    [ack] = inv.receive(response(sent(inv.first()), 401, [("WWW-Authenticate", value)]))
    assert sent(ack).method == "ACK" and inv.outcome is not None and inv.outcome.status == 401


def test_a_proxy_and_the_far_end_each_answered_once_and_both_sent_again() -> None:
    proxy = DigestAuthenticator("proxy.example", {USER: PASSWORD}, algorithms=("MD5",))
    far_end = DigestAuthenticator("pbx.example", {USER: PASSWORD})
    inv = invite()
    _, _, second = answered_challenge(inv, proxy, 407)
    assert proxy.verify("INVITE", TARGET, second.headers.get("Proxy-Authorization")) == "ok"
    _, ack, third = answered_challenge(inv, far_end, 401)
    assert ack.cseq == (2, "ACK") and third.cseq == (3, "INVITE") and inv.cseqs == [1, 2, 3]
    proxy_auth = third.headers.get("Proxy-Authorization") or ""
    assert parse_digest(proxy_auth)["nc"] == "00000002"  # the proxy's nonce again, counted up
    assert proxy.verify("INVITE", TARGET, proxy_auth) == "ok"
    assert far_end.verify("INVITE", TARGET, third.headers.get("Authorization")) == "ok"
    # the far end challenging again: refused
    [last] = inv.receive(challenge(far_end, 401, third))
    assert sent(last).cseq == (3, "ACK") and inv.outcome is not None and inv.outcome.status == 401


def test_a_retransmitted_challenge_is_acked_again_and_changes_nothing() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD})
    inv = invite()
    first = sent(inv.first())
    first_challenge = challenge(server, 407, first)
    ack_bytes, again_bytes = inv.receive(first_challenge, now=0.1)
    assert inv.receive(first_challenge, now=0.3) == [ack_bytes]  # our ACK was lost
    assert inv.request.cseq == (2, "INVITE") and inv.state == "calling" and inv.outcome is None
    assert inv.receive(response(first, 180)) == [] and inv.state == "calling"  # a stray 1xx to the old one


def test_the_new_invite_has_its_own_timers() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD})
    inv = invite(now=0.0)
    first = sent(inv.first())
    _, again_bytes = inv.receive(challenge(server, 401, first), now=20.0)
    assert inv.tick(20.4) == [] and inv.tick(20.5) == [again_bytes]  # Timer A from the new INVITE
    inv.tick(33.0)
    assert inv.outcome is None and inv.state == "calling"  # Timer B restarted: not 64*T1 after the first
    inv.tick(52.0)
    assert inv.outcome is not None and inv.outcome.status == 408


def test_without_now_the_timers_start_at_the_next_tick() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD})
    inv = invite(now=0.0)
    _, again_bytes = inv.receive(challenge(server, 401, sent(inv.first())))
    assert inv.tick(40.0) == [] and inv.outcome is None
    assert inv.tick(40.5) == [again_bytes]


def test_cancel_and_answer_follow_the_new_invite() -> None:
    server = DigestAuthenticator("trunk.example", {USER: PASSWORD})
    inv = invite()
    _, _, again = answered_challenge(inv, server, 407)
    assert inv.receive(response(again, 180)) == [] and inv.state == "proceeding"
    cancel = sent(inv.cancel() or b"")
    assert cancel.cseq == (2, "CANCEL") and cancel.headers.get("Via") == again.headers.get("Via")
    sdp = b"v=0\r\no=gw 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
    [ack_bytes] = inv.receive(response(again, 200, body=sdp))  # the 200 crossed the CANCEL
    ack = sent(ack_bytes)
    assert ack.cseq == (2, "ACK") and ack.uri == "sip:gw@10.0.0.9:5080"
    assert parse_via(ack.headers.get("Via") or "").branch != parse_via(again.headers.get("Via") or "").branch
    outcome = inv.outcome
    assert outcome is not None and outcome.status == 200 and outcome.dialog is not None
    bye = outcome.dialog.request("BYE", "10.0.0.1", 5060)
    assert bye.cseq == (3, "BYE") and bye.call_id == again.call_id and tag_of(bye.headers.get("To")) == "trunk1"


def test_a_challenge_to_a_cancelled_invite_is_not_answered() -> None:
    inv = invite()
    first = sent(inv.first())
    inv.receive(response(first, 183))
    assert inv.cancel() is not None
    [ack] = inv.receive(challenge(DigestAuthenticator("trunk.example", {USER: PASSWORD}), 401, first))
    assert sent(ack).method == "ACK" and inv.outcome is not None and inv.outcome.status == 401


def test_a_challenge_to_an_abandoned_invite_is_not_answered() -> None:
    inv = invite()
    first = sent(inv.first())
    inv.abandon()  # ring_s ran out before anything came back
    [ack] = inv.receive(challenge(DigestAuthenticator("trunk.example", {USER: PASSWORD}), 407, first))
    assert sent(ack).method == "ACK" and inv.outcome is not None and inv.outcome.status == 407 and inv.cseqs == [1]


def test_the_password_stays_out_of_reprs() -> None:
    inv = invite()
    assert PASSWORD not in repr(inv.credentials) and PASSWORD not in repr(inv)
