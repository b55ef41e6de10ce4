"""Which requests belong to a dialog, with bytes and no sockets: Call-ID and both tags
(RFC 3261 §12.2.2), the peer a media change may come from, and the INVITE a CANCEL cancels."""

from __future__ import annotations

import pytest

from voicebot.sip.call import SipCall
from voicebot.sip.dialog import SipDialog, response_to
from voicebot.sip.message import SipRequest, SipResponse, parse, tag_of
from voicebot.sip.rtp import RtpReceiver, RtpSender, RtpSession
from voicebot.sip.transaction import ServerTransactions

CONTACT = "sip:voicebot@127.0.0.1:5060"


def request(method: str, call_id: str = "c1", from_: str = "<sip:+1555@pbx.example>;tag=peer",
            to: str = "<sip:bank@127.0.0.1>", via: str = "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv1",
            cseq: int = 1, uri: str = "sip:bank@127.0.0.1", extra: str = "") -> SipRequest:
    message = parse((f"{method} {uri} SIP/2.0\r\nVia: {via}\r\nFrom: {from_}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n"
                     f"CSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


@pytest.fixture
def dialog() -> SipDialog:
    invite = request("INVITE", extra="Contact: <sip:pbx@192.0.2.20:5070>\r\nRecord-Route: <sip:sbc.example;lr>\r\n")
    return SipDialog.from_invite(invite, CONTACT)


def test_a_request_is_in_the_dialog_only_with_its_call_id_and_both_tags(dialog: SipDialog) -> None:
    ours = f"<sip:bank@127.0.0.1>;tag={dialog.local_tag}"
    assert dialog.matches(request("BYE", to=ours, cseq=2))
    assert dialog.matches(request("BYE", to=f'"Bank" <sip:bank@elsewhere>;foo=1;tag={dialog.local_tag}', cseq=2))
    assert not dialog.matches(request("BYE", to="<sip:bank@127.0.0.1>;tag=guessed", cseq=2))  # not our tag
    assert not dialog.matches(request("BYE", to="<sip:bank@127.0.0.1>", cseq=2))  # no To tag at all
    assert not dialog.matches(request("BYE", to=ours, from_="<sip:+1555@pbx.example>;tag=other", cseq=2))
    assert not dialog.matches(request("BYE", to=ours, from_="<sip:+1555@pbx.example>", cseq=2))
    assert not dialog.matches(request("BYE", call_id="c2", to=ours, cseq=2))  # the tags, another call
    assert not dialog.matches(request("INVITE", to=ours, from_="<sip:x@evil.example>;tag=x", cseq=2))


def test_a_peer_without_a_from_tag_is_matched_by_its_absence() -> None:
    old = SipDialog.from_invite(request("INVITE", from_="<sip:+1555@pbx.example>"), CONTACT)  # RFC 2543
    ours = f"<sip:bank@127.0.0.1>;tag={old.local_tag}"
    assert old.matches(request("BYE", from_="<sip:+1555@pbx.example>", to=ours))
    assert not old.matches(request("BYE", from_="<sip:+1555@pbx.example>;tag=x", to=ours))


def test_a_dialog_we_started_matches_the_phones_requests() -> None:
    invite = request("INVITE", from_="<sip:voicebot@127.0.0.1>;tag=ours", to="<sip:agent@192.0.2.30>")
    ok = response_to(invite, 200, to_tag="phone")
    ok.headers.add("Contact", "<sip:agent@192.0.2.30:5062>")
    leg = SipDialog.from_2xx(invite, ok, CONTACT)
    assert leg.matches(request("BYE", from_="<sip:agent@192.0.2.30>;tag=phone", to="<sip:voicebot@127.0.0.1>;tag=ours"))
    assert not leg.matches(request("BYE", from_="<sip:agent@192.0.2.30>;tag=phone", to="<sip:voicebot@127.0.0.1>"))


def test_tags_of_odd_values() -> None:
    assert tag_of('"a;tag=no" <sip:a@b>;tag=yes') == "yes"
    assert tag_of("sip:a@b;tag=t1") == "t1"
    assert tag_of("<sip:a@b>") is None and tag_of(None) is None and tag_of("<broken") is None


def test_media_may_only_be_moved_from_the_dialogs_peer(dialog: SipDialog) -> None:
    session = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), ("192.0.2.10", 40000))
    call = SipCall(dialog, None, session, ("192.0.2.10", 5060))
    assert call.from_peer(("192.0.2.10", 5060))
    assert call.from_peer(("192.0.2.10", 34567))  # a new TCP connection, an SBC's port pool
    assert call.from_peer(("192.0.2.20", 5070))  # the Contact it gave
    assert not call.from_peer(("192.0.2.99", 5060))
    assert not call.from_peer(("198.51.100.1", 5060))
    proxied = SipCall(dialog, None, session, ("192.0.2.10", 5060))
    proxied.dialog.route_set = ["<sip:198.51.100.7;lr>"]
    assert proxied.from_peer(("198.51.100.7", 5060))  # its first route: the proxy in the path


def _tx_with_invite(invite: SipRequest) -> tuple[ServerTransactions, object]:
    txs = ServerTransactions()
    tx, _ = txs.receive(invite, ("192.0.2.10", 5060), 0.0)
    return txs, tx


def test_a_cancel_must_name_its_invites_transaction() -> None:
    invite = request("INVITE")
    txs, tx = _tx_with_invite(invite)
    assert txs.invite_for(request("CANCEL")) is tx
    assert txs.invite_for(request("CANCEL", via="SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKother")) is None
    assert txs.invite_for(request("CANCEL", via="SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKinv1")) is None
    assert txs.invite_for(request("CANCEL", from_="<sip:+1555@pbx.example>;tag=spoof")) is None
    assert txs.invite_for(request("CANCEL", call_id="c2")) is None
    assert txs.invite_for(request("CANCEL", cseq=2)) is None


def test_an_rfc2543_cancel_is_matched_by_its_invites_identity() -> None:
    via = "SIP/2.0/UDP 192.0.2.10:5060"  # no magic cookie: no branch to go by
    txs, tx = _tx_with_invite(request("INVITE", via=via))
    assert txs.invite_for(request("CANCEL", via=via)) is tx
    assert txs.invite_for(request("CANCEL", via=via, uri="sip:other@127.0.0.1")) is None
    assert txs.invite_for(request("CANCEL", via=via, from_="<sip:+1555@pbx.example>;tag=spoof")) is None


def test_the_table_keeps_room_for_calls() -> None:
    txs = ServerTransactions(max_size=10)
    for i in range(5):
        tx, _ = txs.receive(request("OPTIONS", call_id=f"o{i}", via=f"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKo{i}"),
                            ("192.0.2.10", 5060), 0.0)
        assert tx is not None
    assert not txs.room(invite=False) and txs.room(invite=True)  # OPTIONS and such: half the table
    for i in range(5):
        txs.receive(request("INVITE", call_id=f"i{i}", via=f"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKi{i}"),
                    ("192.0.2.10", 5060), 0.0)
    assert not txs.room(invite=True)
    assert txs.known(request("INVITE", call_id="i0", via="SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKi0"))


def test_a_response_keeps_the_requests_tags() -> None:
    bye = request("BYE", to="<sip:bank@127.0.0.1>;tag=ours")
    ok = response_to(bye, 481, to_tag="fresh")
    assert isinstance(ok, SipResponse) and tag_of(ok.headers.get("To")) == "ours"
