"""Server transactions on a fake clock: retransmissions absorbed, responses retransmitted."""

from __future__ import annotations

from voicebot.sip.message import SipRequest, SipResponse, parse
from voicebot.sip.transaction import Send, ServerTransactions, TimedOut

SRC = ("127.0.0.1", 5070)


def request(method: str = "INVITE", branch: str = "z9hG4bK-1", cseq: int = 1) -> SipRequest:
    raw = (f"{method} sip:bank@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n"
           f"From: <sip:a@b>;tag=1\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: {cseq} {method}\r\n"
           "Content-Length: 0\r\n\r\n")
    msg = parse(raw.encode())
    assert isinstance(msg, SipRequest)
    return msg


def response(req: SipRequest, status: int) -> SipResponse:
    resp = SipResponse(status, "X")
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        resp.headers.add(name, req.headers.get(name) or "")
    return resp


def test_retransmitted_invite_gets_the_last_provisional_again() -> None:
    txs = ServerTransactions()
    tx, out = txs.receive(request(), SRC, 0.0)
    assert tx is not None and out == []
    sent = txs.respond(tx, response(tx.request, 100), 0.0)
    again, out = txs.receive(request(), SRC, 0.3)
    assert again is None and out == sent


def test_2xx_is_retransmitted_with_backoff_until_acked() -> None:
    txs = ServerTransactions()
    tx, _ = txs.receive(request(), SRC, 0.0)
    assert tx is not None
    txs.respond(tx, response(tx.request, 200), 0.0)
    times = []
    now = 0.0
    while now < 10:
        now += 0.25
        if [o for o in txs.tick(now) if isinstance(o, Send)]:
            times.append(round(now, 2))
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]  # T1, 2T1, 4T1, then capped at T2 = 4 s
    assert txs.ack_2xx("c1", 1)
    assert txs.tick(now + 5) == []


def test_unacked_2xx_times_out_for_the_dialog_to_hang_up() -> None:
    txs = ServerTransactions()
    tx, _ = txs.receive(request(), SRC, 0.0)
    assert tx is not None
    txs.respond(tx, response(tx.request, 200), 0.0)
    outs = [o for t in range(1, 70) for o in txs.tick(float(t) / 2)]
    assert TimedOut(tx.key, "c1", "no_ack_2xx") in outs
    assert txs.table == {}


def test_error_response_absorbs_its_ack() -> None:
    txs = ServerTransactions()
    tx, _ = txs.receive(request(), SRC, 0.0)
    assert tx is not None
    txs.respond(tx, response(tx.request, 486), 0.0)
    assert txs.receive(request("ACK"), SRC, 0.2) == (None, [])
    assert tx.state == "confirmed"
    assert [o for o in txs.tick(0.6) if isinstance(o, Send)] == []  # no more 486 retransmissions
    txs.tick(6.0)
    assert txs.table == {}


def test_non_invite_retransmission_and_expiry() -> None:
    txs = ServerTransactions()
    tx, _ = txs.receive(request("OPTIONS", "z9hG4bK-o"), SRC, 0.0)
    assert tx is not None
    sent = txs.respond(tx, response(tx.request, 200), 0.0)
    assert txs.receive(request("OPTIONS", "z9hG4bK-o"), SRC, 1.0) == (None, sent)
    assert txs.tick(1.0) == []  # final non-INVITE responses are not retransmitted on their own
    txs.tick(40.0)
    assert txs.table == {}


def test_cancel_finds_its_invite() -> None:
    txs = ServerTransactions()
    tx, _ = txs.receive(request(), SRC, 0.0)
    cancel, _ = txs.receive(request("CANCEL"), SRC, 0.1)
    assert cancel is not None and cancel is not tx  # CANCEL is its own transaction
    assert txs.invite_for(request("CANCEL")) is tx
