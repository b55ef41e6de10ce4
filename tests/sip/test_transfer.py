"""What a transfer out carries: handoff headers, a Refer-To short enough for real phones,
User-to-User, and where a target URI sends us."""

from __future__ import annotations

import pytest

from voicebot.sip.message import parse_name_addr
from voicebot.sip.transfer import MAX_REFER_TO, handoff_headers, refer_to, sipfrag_status, uri_address, user_to_user

RECORD = {"id": "7c0cb62c229c41c2b880345892891181", "transfer": {"queue": "disputes", "reason": "dispute_charge", "priority": 5},
          "turns": [{"speaker": "caller", "intent": "dispute_charge"}]}


def test_handoff_headers_name_the_call_and_why() -> None:
    headers = dict(handoff_headers(RECORD, "http://voicebot.example:8080/api/calls/7c0c"))
    assert headers["X-Voicebot-Queue"] == "disputes" and headers["X-Voicebot-Intent"] == "dispute_charge"
    assert headers["X-Voicebot-Context"] == "http://voicebot.example:8080/api/calls/7c0c"
    evil = {**RECORD, "transfer": {"queue": "q\r\nBYE sip:x SIP/2.0", "reason": "r"}}
    assert "\r" not in dict(handoff_headers(evil, "u"))["X-Voicebot-Queue"]  # no header injection


def test_refer_to_keeps_the_most_important_headers_within_what_phones_accept() -> None:
    headers = handoff_headers(RECORD, "http://voicebot.example:8080/api/calls/" + RECORD["id"])
    value = refer_to("sip:agent@pbx.example.net:5060", headers, user_to_user(headers))
    assert len(value) <= MAX_REFER_TO
    uri = parse_name_addr(value).uri
    assert uri.startswith("sip:agent@pbx.example.net:5060?X-Voicebot-Call-Id=" + RECORD["id"] + "&X-Voicebot-Queue=disputes")
    short = refer_to("sip:a@b", headers[:2], "00;encoding=hex")
    assert short.endswith("&User-to-User=00%3Bencoding%3Dhex>")  # everything fits: everything goes


def test_user_to_user_is_hex_with_its_purpose() -> None:
    value = user_to_user(handoff_headers(RECORD, "u"))
    data, _, params = value.partition(";")
    assert params == "encoding=hex;purpose=call-info"
    assert bytes.fromhex(data).decode() == f"call-id={RECORD['id']};reason=dispute_charge;intent=dispute_charge;context=u"


@pytest.mark.parametrize("uri, address", [
    ("sip:agent@10.0.0.5:5070", ("10.0.0.5", 5070)), ("sip:pbx.example.net;transport=udp", ("pbx.example.net", 5060)),
    ("<sip:1000@[2001:db8::1]:5080>", ("2001:db8::1", 5080)), ("sips:q@pbx.example.net?X-A=1", ("pbx.example.net", 5060))])
def test_uri_address(uri: str, address: tuple[str, int]) -> None:
    assert uri_address(uri) == address


def test_uri_address_refuses_what_is_not_sip() -> None:
    with pytest.raises(ValueError):
        uri_address("http://pbx.example.net")


def test_sipfrag_status() -> None:
    assert sipfrag_status(b"SIP/2.0 486 Busy Here\r\n") == 486 and sipfrag_status(b"garbage") is None


def test_user_to_user_adds_the_context_url_when_it_fits() -> None:
    short = {"id": "c1", "transfer": {"queue": "q", "reason": "r"}, "turns": []}
    data = bytes.fromhex(user_to_user(handoff_headers(short, "http://vb/api/calls/c1")).split(";")[0]).decode()
    assert data == "call-id=c1;reason=r;context=http://vb/api/calls/c1"
    long_url = "http://voicebot.example.net:8080/api/calls/" + RECORD["id"]
    data = bytes.fromhex(user_to_user(handoff_headers(RECORD, long_url)).split(";")[0])
    assert len(data) <= 128 and b"context=" not in data
