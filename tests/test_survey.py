"""The post-call survey on a real line: the real Piper voice asks, a scripted caller keys or
says a rating (Piper speech through a G.711 line), the real Whisper hears it, and the record
is read back.  The schema's own checks run without models."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nlu.test_domain_validation import edit, line_of, problems
from tests.speech import phone_line, piper, rms
from voicebot.nlu.domain import SurveySettings, load_domain_spec
from voicebot.records.store import RecordStore
from voicebot.scripted_call import AwaitBot, Pause, Press, ScriptedCall, Speak, Step
from voicebot.survey import run_survey

RATE = 8000
# Shorter lines than the defaults: the same code path, less time listening to a question.
SPEC = SurveySettings(enabled=True, prompt="How would you rate this call, from 1 to 5?",
                      reprompt="Please press or say a number from 1 to 5.", thanks="Thank you.", timeout_s=4)


# --------------------------------------------------------------------------- the schema (pure)

def test_survey_is_off_unless_a_domain_opts_in(bank_copy: Path) -> None:
    survey = load_domain_spec(bank_copy).settings.survey
    assert not survey.enabled and not survey.offered_after("bot") and not survey.offered_after("agent")
    assert survey.after == ["agent", "bot"] and survey.timeout_s == 6 and survey.retries == 1
    assert survey.prompt.startswith("Before you go: how would you rate this call")


def test_a_domain_opts_in_for_the_agents_calls_only(bank_copy: Path) -> None:
    domain = bank_copy / "domain.yaml"
    domain.write_text(domain.read_text() + "survey:\n  enabled: true\n  after: [agent]\n  retries: 2\n")
    survey = load_domain_spec(bank_copy).settings.survey
    assert survey.offered_after("agent") and not survey.offered_after("bot") and survey.retries == 2


def test_survey_mistakes_are_reported_with_file_and_line(bank_copy: Path) -> None:
    domain = bank_copy / "domain.yaml"
    domain.write_text(domain.read_text() + "survey:\n  enabled: true\n  after: [agent, robot]\n  timeout_s: 0\n"
                      "  thanks: \"Thanks {caller.name}!\"\n")
    found = problems(bank_copy)
    assert any(p.startswith(f"{domain}:{line_of(domain, 'robot')}:") and "survey.after.1" in p for p in found)
    assert any(p.startswith(f"{domain}:{line_of(domain, 'timeout_s: 0')}:") and "greater than 0" in p for p in found)
    edit(domain, "  after: [agent, robot]\n  timeout_s: 0\n", "")
    found = problems(bank_copy)
    assert found == [f"{domain}:{line_of(domain, 'Thanks {caller.name}')}: survey.thanks has a template field {{caller.name}};"
                     " survey lines are said as written"]


# --------------------------------------------------------------------------- on a line (real models)

@pytest.fixture(scope="module")
def engines(voice_engines):  # type: ignore[no-untyped-def]
    """The session's shared engines (the default configuration; no survey prompt is warmed)."""
    return voice_engines


def survey(engines, tmp_path: Path, script: list[Step], spec: SurveySettings = SPEC,  # type: ignore[no-untyped-def]
           ) -> tuple[int | None, dict[str, Any], ScriptedCall, float]:
    """Run the survey against a scripted caller; the result, the call's record, the caller
    (with what it heard) and how long the survey took."""
    store = RecordStore(tmp_path / "calls.sqlite3")
    call_id = store.start_call("test", "+15551230000", "bank")

    async def scenario() -> tuple[int | None, ScriptedCall, float]:
        caller = ScriptedCall(script, input_rate=RATE, output_sample_rate=RATE, tail_s=0.0)
        started = time.monotonic()
        score = await asyncio.wait_for(run_survey(caller, engines, store, call_id, spec), 30)
        took = time.monotonic() - started
        await caller.release()  # the call hangs up after the survey
        return score, caller, took

    score, caller, took = asyncio.run(scenario())
    record = store.get_call(call_id)
    assert record is not None
    return score, record, caller, took


def outcomes(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e["kind"], e["data"]) for e in record["events"] if e["kind"].startswith("survey")]


def said(record: dict[str, Any], speaker: str) -> list[str]:
    return [t["text"] for t in record["transcript"] if t["speaker"] == speaker]


@pytest.mark.slow
def test_a_caller_keys_a_wrong_digit_over_the_question_is_asked_again_and_keys_4(engines, tmp_path: Path) -> None:
    score, record, caller, _ = survey(engines, tmp_path, [Pause(1.5), Press("9"), AwaitBot(timeout_s=15),
                                                          Press("4"), AwaitBot(timeout_s=10)])
    assert score == 4
    assert outcomes(record) == [("survey", {"score": 4, "by": "dtmf"})]
    assert said(record, "caller") == ["[DTMF 9]", "[DTMF 4]"]
    assert said(record, "bot") == [SPEC.prompt, SPEC.reprompt, SPEC.thanks]
    assert rms(caller.heard_audio()) > 0.01  # the questions and the thanks were played on the line


@pytest.mark.slow
def test_a_caller_says_five(engines, tmp_path: Path) -> None:
    five = phone_line(*piper(engines.tts, "Five."))
    score, record, _, _ = survey(engines, tmp_path, [AwaitBot(timeout_s=15), Speak(*five, "five"),
                                                     AwaitBot(timeout_s=15)])
    assert score == 5
    assert outcomes(record) == [("survey", {"score": 5, "by": "speech"})]
    assert [text.lower().strip(" .!") for text in said(record, "caller")] in (["five"], ["5"])  # Whisper writes either
    assert said(record, "bot") == [SPEC.prompt, SPEC.thanks]


@pytest.mark.slow
def test_a_caller_who_hangs_up_gives_no_answer_at_once(engines, tmp_path: Path) -> None:
    score, record, _, took = survey(engines, tmp_path, [Pause(1.0)])  # leaves during the question
    assert score is None and took < 1.0 + SPEC.timeout_s  # not left listening to a closed line
    assert outcomes(record) == [("survey_no_answer", {"reason": "hung_up", "asked": 1})]
    assert said(record, "bot") == [SPEC.prompt]


@pytest.mark.slow
def test_a_silent_caller_is_asked_again_then_left_alone(engines, tmp_path: Path) -> None:
    spec = SurveySettings(enabled=True, prompt="Rate us, 1 to 5.", reprompt="1 to 5, please.", timeout_s=1.0)
    score, record, _, _ = survey(engines, tmp_path, [Pause(20.0)], spec)
    assert score is None
    assert outcomes(record) == [("survey_no_answer", {"reason": "timeout", "asked": 2})]
    assert said(record, "bot") == [spec.prompt, spec.reprompt] and said(record, "caller") == []
