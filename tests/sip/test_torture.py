"""RFC 4475-style messages kept on disk (tests/sip/corpus/torture): the parser accepts the
odd-but-valid ones and refuses the broken ones with the right status, and the endpoint
answers each of them in protocol over real UDP."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.sip.test_endpoint import Peer
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipParseError, SipRequest, SipResponse, parse, parse_name_addr, parse_via
from voicebot.sip.sdp import negotiate, parse_sdp, sdp_body

TORTURE = Path(__file__).parent / "corpus" / "torture"
EXPECTED: dict[str, dict] = yaml.safe_load((TORTURE / "expected.yaml").read_text())


def message(name: str) -> bytes:
    return (TORTURE / f"{name}.sip").read_text().replace("\n", "\r\n").encode()


def test_every_file_has_an_expectation_and_every_expectation_a_file() -> None:
    assert {p.stem for p in TORTURE.glob("*.sip")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if e.get("parse")))
def test_odd_but_valid_messages_parse(name: str) -> None:
    parsed = parse(message(name))
    assert parsed.call_id and parsed.cseq[0] >= 0
    for name_addr in ("From", "To"):
        parse_name_addr(parsed.headers.get(name_addr) or "")
    for via in parsed.headers.get_all("Via"):
        parse_via(via)


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if "reject" in e))
def test_broken_messages_are_refused_with_the_right_status(name: str) -> None:
    with pytest.raises(SipParseError) as error:
        parse(message(name))
    assert error.value.status == EXPECTED[name]["reject"], error.value.reason


def test_the_tortuous_invite_reads_as_intended() -> None:
    invite = parse(message("folded_compact_invite"))
    assert isinstance(invite, SipRequest) and invite.cseq == (314159, "INVITE")
    vias = [parse_via(v) for v in invite.headers.get_all("Via")]
    assert [(v.transport, v.host, v.port, v.branch) for v in vias] == [
        ("UDP", "edge.example.net", 5060, "z9hG4bKfold1"), ("TCP", "core.example.net", None, "z9hG4bKfold2"),
        ("UDP", "2001:db8::9", 5070, "z9hG4bKfold3")]
    to = parse_name_addr(invite.headers.get("To") or "")
    assert to.display == 'Bank "Main" Line' and to.uri == "sip:bank@voicebot.example.net"
    caller = parse_name_addr(invite.headers.get("From") or "")
    assert (caller.display, caller.tag) == ("caller", "a48s")
    assert invite.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert invite.headers.get("Max-Forwards") == "0069" and invite.headers.get("Subject") == ""
    assert negotiate(parse_sdp(invite.body.decode())).remote_port == 49170


def test_bytes_after_content_length_are_not_part_of_the_message() -> None:
    first = parse(message("trailing_octets"))
    assert isinstance(first, SipRequest) and first.method == "REGISTER" and first.body == b""


def test_the_sdp_is_found_in_a_multipart_body() -> None:
    invite = parse(message("multipart_sdp"))
    sdp = sdp_body(invite.headers.get("Content-Type") or "", invite.body)
    assert sdp is not None and negotiate(parse_sdp(sdp.decode())).codec == "PCMA"


def test_responses_with_odd_reason_phrases() -> None:
    odd = parse(message("utf8_reason"))
    empty = parse(message("empty_reason"))
    assert isinstance(odd, SipResponse) and odd.status == 200 and odd.reason.startswith("= 2**3")
    assert isinstance(empty, SipResponse) and (empty.status, empty.reason) == (100, "")


@pytest.fixture
async def endpoint():
    ep = SipEndpoint(SipConfig(port=0, max_calls=50, max_setups_per_s=100), lambda leg: "call")
    await ep.start()
    yield ep
    await ep.stop()


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items() if "answer" in e or e.get("reject")))
async def test_the_endpoint_answers_each_in_protocol(endpoint, name: str) -> None:
    peer = Peer(endpoint.config.port)
    await peer.send(message(name))
    finals = [r.status for r in await peer.responses(0.4) if r.status >= 200]
    expected = EXPECTED[name].get("answer", EXPECTED[name].get("reject"))
    assert finals[:1] == ([expected] if expected else []), finals
