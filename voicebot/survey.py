"""The post-call survey (CSAT): once the conversation is over, ask the caller for a rating
1-5 by key or by speech, and write it down with the call.

``calls.Call`` runs it on the caller's line after the bot's goodbye or the agent's hang-up,
when the domain's ``survey`` opts in; the bot's pipeline and the agent's bridge have let go of
the line by then, so it hears and speaks there through a ``CallerLine`` (``caller_line.py``:
keys and a ``LegTranscriber`` on the shared ASR, the shared TTS).

What it leaves in the record: an event ``survey`` {"score": 1..5, "by": "dtmf" | "speech"}
(what the reports read), or ``survey_no_answer`` {"reason", "asked"} when none came; the
questions as bot turns and whatever the caller said or keyed as caller turns.  A caller who
hangs up ends it at once; nothing here raises into the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from voicebot.caller_line import WORDS_GRACE_S, CallerLine, Gone, Key, Words, open_line
from voicebot.media import MediaStream
from voicebot.nlu.domain import SurveySettings
from voicebot.nlu.rating import HIGHEST, LOWEST, parse_rating
from voicebot.pipeline.call import Engines
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

LAST_WORDS_S = 2.0  # a caller who answers and hangs up at once: how long their answer may take to decode


@dataclass(frozen=True)
class _Outcome:
    score: int | None = None
    by: str | None = None  # dtmf | speech
    wrong: bool = False  # heard something that is not a rating 1-5
    gone: bool = False


async def run_survey(stream: MediaStream, engines: Engines, store: RecordStore, call_id: str,
                     spec: SurveySettings) -> int | None:
    """Ask, listen, store; the rating, or None when the caller gave none or left."""
    survey: _Survey | None = None
    try:
        survey = _Survey(stream, engines, store, call_id, spec)
        return await survey.run()
    except Exception:  # a survey is never worth a failed call
        log.exception("call %s: survey failed", call_id)
        if survey is not None:
            survey.no_answer("error")
        return None


class _Survey:
    """The survey's questions and what counts as a rating, on a ``CallerLine``."""

    def __init__(self, stream: MediaStream, engines: Engines, store: RecordStore, call_id: str,
                 spec: SurveySettings) -> None:
        self.line = CallerLine(stream, engines, store, call_id, name="survey")
        self.stream = stream
        self.store = store
        self.call_id = call_id
        self.spec = spec
        self.asked = 0
        self.recorded = False

    async def run(self) -> int | None:
        if not open_line(self.stream):
            self.no_answer("hung_up")
            return None
        async with self.line.listening():
            outcome = _Outcome()
            for attempt in range(self.spec.retries + 1):
                outcome = await self._ask(self.spec.prompt if attempt == 0 else self.spec.reprompt)
                if outcome.score is not None or outcome.gone:
                    break
            if outcome.score is None:
                self.no_answer("hung_up" if outcome.gone else "invalid" if outcome.wrong else "timeout")
                return None
            self.store.event(self.call_id, "survey", {"score": outcome.score, "by": outcome.by})
            self.recorded = True
            if not outcome.gone:
                await self.line.say(self.spec.thanks)
                await self.line.played()
            return outcome.score

    def no_answer(self, reason: str) -> None:
        if self.recorded:
            return
        self.recorded = True
        self.line.event("survey_no_answer", {"reason": reason, "asked": self.asked})

    async def _ask(self, question: str) -> _Outcome:
        """One question and its answer: a rating, something else, silence, or a hang-up."""
        self.asked += 1
        await self.line.say(question)
        deadline = time.monotonic() + self.stream.playout().pending_ms / 1000 + self.spec.timeout_s
        wrong = False
        while True:
            heard = await self.line.next(deadline)
            if heard is None:
                return _Outcome(wrong=wrong)
            if isinstance(heard, Gone):
                return await self._last_words()
            if isinstance(heard, Key):
                if not heard.digit.isdigit():  # "*", "#" ("4#"), A-D: not an answer, not a mistake
                    continue
                self.line.turn(f"[DTMF {heard.digit}]")
                self.stream.clear()  # a key answers at once, over the question
                score = int(heard.digit)
                if LOWEST <= score <= HIGHEST:
                    return _Outcome(score, "dtmf")
                return _Outcome(wrong=True)
            if not isinstance(heard, Words):  # audio: only a line without ears queues it
                continue
            score = parse_rating(heard.text)
            if score is not None:
                self.stream.clear()
                return _Outcome(score, "speech")
            if self.stream.playout().pending_ms > 0:  # over the question (or its echo): not an answer yet
                continue
            wrong = True  # "let me think": wait a little for the number before asking again
            deadline = max(deadline, time.monotonic() + WORDS_GRACE_S)

    async def _last_words(self) -> _Outcome:
        """The line closed: an answer said just before the hang-up still counts, once decoded."""
        if self.line.ears is not None:
            try:
                await asyncio.wait_for(self.line.ears.aclose(), LAST_WORDS_S)
            except asyncio.TimeoutError:
                pass
        heard = self.line.heard
        while not heard.empty():
            said = heard.get_nowait()
            if isinstance(said, Words) and (score := parse_rating(said.text)) is not None:
                return _Outcome(score, "speech", gone=True)
        return _Outcome(gone=True)
