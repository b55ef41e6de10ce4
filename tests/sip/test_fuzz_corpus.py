"""The fuzz corpus kept on disk (tests/sip/corpus/fuzz: inputs that once broke the endpoint or
reached new code) is replayed through the endpoint's real receive path on every run, plus a
short fresh mutation run; longer runs: ``python -m tests.sip.fuzz --grow --minutes 10``."""

from __future__ import annotations

import pytest

from tests.sip import fuzz
from voicebot.sip import message as sip_message
from voicebot.sip.dialog import SipDialog


def test_the_kept_corpus_never_breaks_the_endpoint() -> None:
    corpus = sorted(fuzz.FOUND.glob("*.bin"))
    assert len(corpus) >= 20  # grown by coverage-guided runs; crashers land here too
    broken = {path.name: problem for path in corpus if (problem := fuzz.check(path.read_bytes())) is not None}
    assert broken == {}


def test_the_dialog_seeds_reach_the_established_call() -> None:
    harness = fuzz._harness()

    def answer(data: bytes) -> list[tuple[int, str]]:
        assert harness.loop.run_until_complete(harness._feed(data, tcp=False)) is None
        return [(r.status, r.cseq[1]) for r in map(sip_message.parse, harness.udp_out)]

    assert answer(fuzz.message("BYE")) == [(200, "BYE")]  # the caller's own BYE ends it
    assert answer(fuzz.message("BYE", from_tag="stranger")) == [(481, "BYE")]
    assert answer(fuzz.message("INVITE", body=fuzz.SDP.format(port=41000))) == [(200, "INVITE")]
    for data in fuzz.DIALOG_SEEDS:
        assert fuzz.check(data) is None, data[:80]


def test_a_fresh_mutation_run_finds_nothing() -> None:
    crashes, _ = fuzz.run(3000, seed=20261125)
    assert [problem for _, problem in crashes] == []


def test_the_harness_tells_a_bug_from_a_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    valid = (fuzz.CORPUS / "torture" / "no_space_before_uri.sip").read_text().replace("\n", "\r\n").encode()
    assert fuzz.check(b"garbage") is None  # refused with SipParseError: fine
    assert fuzz.check(valid) is None
    monkeypatch.setattr(sip_message, "parse_via", lambda value: 1 / 0)  # a parser that blows up
    assert "ZeroDivisionError" in (fuzz.check(valid) or "")


def test_the_harness_sees_a_stranger_touch_the_call(monkeypatch: pytest.MonkeyPatch) -> None:
    stranger = fuzz.message("BYE", from_tag="stranger")
    assert fuzz.check(stranger) is None
    monkeypatch.setattr(SipDialog, "matches", lambda self, request: request.call_id == self.call_id)  # Call-ID only
    assert "changed without its Call-ID and tags" in (fuzz.check(stranger) or "")
