"""The post-call survey (CSAT): once the conversation is over, ask the caller for a rating
1-5 by key or by speech, and write it down with the call.

``calls.Call`` runs it on the caller's line after the bot's goodbye or the agent's hang-up,
when the domain's ``survey`` opts in; the bot's pipeline and the agent's bridge have let go of
the line by then, so this listens to it directly (a ``LegTranscriber`` on the shared ASR, the
way a waiting caller is heard), and speaks with the shared TTS.

What it leaves in the record: an event ``survey`` {"score": 1..5, "by": "dtmf" | "speech"}
(what the reports read), or ``survey_no_answer`` {"reason", "asked"} when none came; the
questions as bot turns and whatever the caller said or keyed as caller turns.  A caller who
hangs up ends it at once; nothing here raises into the call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import Union

from voicebot.media import AudioChunk, Dtmf, EdgeStream, MediaStream
from voicebot.nlu.domain import SurveySettings
from voicebot.nlu.rating import HIGHEST, LOWEST, parse_rating
from voicebot.pipeline.call import Engines
from voicebot.pipeline.transcriber import LegTranscriber
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

WORDS_GRACE_S = 1.5  # after words that are no rating, how long to wait for one before asking again
LAST_WORDS_S = 2.0  # a caller who answers and hangs up at once: how long their answer may take to decode
DECODING_S = 10.0  # past the deadline, how long words said before it may take to decode (a busy CPU)
POLL_S = 0.05


@dataclass(frozen=True)
class _Key:
    digit: str


@dataclass(frozen=True)
class _Words:
    text: str


@dataclass(frozen=True)
class _Gone:
    pass


_Heard = Union[_Key, _Words, _Gone]


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
    def __init__(self, stream: MediaStream, engines: Engines, store: RecordStore, call_id: str,
                 spec: SurveySettings) -> None:
        self.stream = stream
        self.engines = engines
        self.store = store
        self.call_id = call_id
        self.spec = spec
        self.heard: asyncio.Queue[_Heard] = asyncio.Queue()
        self.asked = 0
        self.recorded = False
        self.ears = LegTranscriber(engines.asr, engines.scorer(), "caller", self._said)

    async def run(self) -> int | None:
        if not _open(self.stream):
            self.no_answer("hung_up")
            return None
        worker = asyncio.create_task(self.ears.run(), name=f"survey-asr-{self.call_id[:8]}")
        reader = asyncio.create_task(self._read(), name=f"survey-{self.call_id[:8]}")
        try:
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
                await self._say(self.spec.thanks)
                await self._played(reader)
            return outcome.score
        finally:
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)

    def no_answer(self, reason: str) -> None:
        if self.recorded:
            return
        self.recorded = True
        try:
            self.store.event(self.call_id, "survey_no_answer", {"reason": reason, "asked": self.asked})
        except Exception:
            log.exception("call %s: could not record the survey's outcome", self.call_id)

    # ------------------------------------------------------------------ the caller's side

    async def _read(self) -> None:
        """Every key, and the caller's audio for the transcriber, until the line closes."""
        try:
            async for event in self.stream.events():
                if isinstance(event, AudioChunk):
                    self.ears.feed(event.pcm, event.sample_rate)
                elif isinstance(event, Dtmf):
                    self.heard.put_nowait(_Key(event.digit))
        except Exception:  # deaf from here on: the questions time out, the call goes on
            log.exception("call %s: survey stopped listening", self.call_id)
            return
        self.heard.put_nowait(_Gone())

    def _said(self, speaker: str, text: str, started: float, ended: float) -> None:
        self.store.add_turn(self.call_id, speaker, text, started_at=started, ended_at=ended)
        self.heard.put_nowait(_Words(text))

    async def _ask(self, question: str) -> _Outcome:
        """One question and its answer: a rating, something else, silence, or a hang-up."""
        self.asked += 1
        await self._say(question)
        deadline = time.monotonic() + self.stream.playout().pending_ms / 1000 + self.spec.timeout_s
        wrong = False
        while True:
            heard = await self._next(deadline)
            if heard is None:
                return _Outcome(wrong=wrong)
            if isinstance(heard, _Gone):
                return await self._last_words()
            if isinstance(heard, _Key):
                if not heard.digit.isdigit():  # "*", "#" ("4#"), A-D: not an answer, not a mistake
                    continue
                self._turn(f"[DTMF {heard.digit}]")
                self.stream.clear()  # a key answers at once, over the question
                score = int(heard.digit)
                if LOWEST <= score <= HIGHEST:
                    return _Outcome(score, "dtmf")
                return _Outcome(wrong=True)
            score = parse_rating(heard.text)
            if score is not None:
                self.stream.clear()
                return _Outcome(score, "speech")
            if self.stream.playout().pending_ms > 0:  # over the question (or its echo): not an answer yet
                continue
            wrong = True  # "let me think": wait a little for the number before asking again
            deadline = max(deadline, time.monotonic() + WORDS_GRACE_S)

    async def _next(self, deadline: float) -> _Heard | None:
        """What the caller did next, or None once ``deadline`` (monotonic) has passed."""
        latest = deadline + DECODING_S
        while True:
            if not self.heard.empty():  # heard already: counts even when the deadline has just passed
                return self.heard.get_nowait()
            now = time.monotonic()
            if now >= deadline and not (self._decoding() and now < latest):
                return None
            wait = deadline - now if now < deadline else POLL_S  # past it: only while words are decoded
            try:
                return await asyncio.wait_for(self.heard.get(), wait)
            except asyncio.TimeoutError:
                continue

    def _decoding(self) -> bool:
        """Words the caller finished saying are still with the ASR: an answer may be among them."""
        stats = self.ears.stats
        return stats.utterances > stats.transcribed + stats.empty + stats.failures + stats.dropped

    async def _last_words(self) -> _Outcome:
        """The line closed: an answer said just before the hang-up still counts, once decoded."""
        try:
            await asyncio.wait_for(self.ears.aclose(), LAST_WORDS_S)
        except asyncio.TimeoutError:
            pass
        while not self.heard.empty():
            heard = self.heard.get_nowait()
            if isinstance(heard, _Words) and (score := parse_rating(heard.text)) is not None:
                return _Outcome(score, "speech", gone=True)
        return _Outcome(gone=True)

    # ------------------------------------------------------------------ the bot's side

    async def _say(self, text: str) -> None:
        rate = self.stream.output_sample_rate
        self._turn(text, speaker="bot")
        async with aclosing(self.engines.tts.stream(text, rate)) as sentences:
            async for pcm in sentences:
                if self.stream.closed:
                    return
                await self.stream.write(pcm, rate)

    async def _played(self, reader: asyncio.Task[None]) -> None:
        """Until the caller has heard the thanks (the line is hung up right after)."""
        deadline = time.monotonic() + self.stream.playout().pending_ms / 1000 + 1.0
        while self.stream.playout().pending_ms > 0 and not reader.done() and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)

    def _turn(self, text: str, speaker: str = "caller") -> None:
        now = time.time()
        self.store.add_turn(self.call_id, speaker, text, started_at=now, ended_at=now)


def _open(stream: MediaStream) -> bool:
    """The caller's line, open for the survey: the bot's pipeline closed it when it let go
    (the call retains it), so it is reopened unless the caller has left."""
    if isinstance(stream, EdgeStream) and stream.closed and not stream.released:
        stream.reopen()
    return not stream.closed
