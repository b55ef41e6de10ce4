"""The fuzz corpus kept on disk (tests/sip/corpus/fuzz: inputs that once broke a parser or
reached new code) is replayed on every run, plus a short fresh mutation run; longer runs:
``python -m tests.sip.fuzz --iterations 200000 --grow``."""

from __future__ import annotations

import pytest

from tests.sip import fuzz


def test_the_kept_corpus_never_breaks_a_parser() -> None:
    corpus = sorted(fuzz.FOUND.glob("*.bin"))
    assert len(corpus) >= 20  # grown by coverage-guided runs; crashers land here too
    broken = {path.name: problem for path in corpus if (problem := fuzz.check(path.read_bytes())) is not None}
    assert broken == {}


def test_a_fresh_mutation_run_finds_nothing() -> None:
    crashes, _ = fuzz.run(3000, seed=20261125)
    assert [problem for _, problem in crashes] == []


def test_the_harness_tells_a_parser_bug_from_a_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    message = (fuzz.CORPUS / "torture" / "no_space_before_uri.sip").read_text().replace("\n", "\r\n").encode()
    assert fuzz.check(b"garbage") is None  # refused with SipParseError: fine
    monkeypatch.setattr(fuzz, "parse_via", lambda value: 1 / 0)  # a parser that blows up
    assert "ZeroDivisionError" in (fuzz.check(message) or "")
