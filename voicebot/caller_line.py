"""The bot on a caller's line once the bot's pipeline has let go of it.

Three short dialogs run there: the post-call survey (``survey.py``), agreeing a callback
(``callback_offer.py``) and taking a voicemail (``voicemail.py``).  Neither the pipeline nor an
agent's bridge holds the line by then, so each needs the same things, kept here once: reopen
the retained line (unless the caller left), read it (keys, and the caller's audio through a
``LegTranscriber`` on the shared ASR, the way a waiting caller is heard), speak with the shared
TTS, wait until the caller has heard it, and write both sides to the record.  What a dialog
asks and what an answer means stays with that dialog.

What was heard comes out of one queue, in the order it happened: ``Key``, ``Words`` and, once
the line closes, ``Gone``.  A line without ears (a voicemail records the audio rather than
transcribing it) queues each ``AudioChunk`` as it came instead of words.  Nothing here raises
into the call: a record that cannot be written is logged and skipped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Union

from voicebot.media import AudioChunk, Dtmf, EdgeStream, MediaStream
from voicebot.pipeline.call import Engines
from voicebot.pipeline.transcriber import LegTranscriber
from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

WORDS_GRACE_S = 1.5  # after words that are no answer, how long to wait for one before asking again
DECODING_S = 10.0  # past a deadline, how long words said before it may take to decode (a busy CPU)
PLAYED_GRACE_S = 1.0  # past the audio's own length, how long to wait for it to be heard
POLL_S = 0.05


@dataclass(frozen=True)
class Key:
    """A key the caller pressed."""

    digit: str


@dataclass(frozen=True)
class Words:
    """What the caller said, as the ASR decoded it."""

    text: str


@dataclass(frozen=True)
class Gone:
    """The line closed (the caller hung up, or, on a line that says so, can no longer be heard)."""


Heard = Union[Key, Words, AudioChunk, Gone]  # AudioChunk: only on a line without ears


def open_line(stream: MediaStream) -> bool:
    """The caller's line, open for a dialog: the bot's pipeline closed it when it let go (the
    call retains it), so it is reopened unless the caller has left; False when they have."""
    if isinstance(stream, EdgeStream) and stream.closed and not stream.released:
        stream.reopen()
    return not stream.closed


class CallerLine:
    """Ears and voice on a caller's line, for a dialog that runs after the pipeline.

    ``name`` says whose line it is in task names and logs ("survey").  ``ears`` False: no
    transcriber, the audio itself is queued.  ``deaf_is_gone``: a reader that fails queues
    ``Gone`` (a recording is over); otherwise the dialog's questions simply time out.  A
    ``store`` or ``call_id`` of None writes nothing to the record.
    """

    def __init__(self, stream: MediaStream, engines: Engines, store: RecordStore | None, call_id: str | None, *,
                 name: str, ears: bool = True, deaf_is_gone: bool = False) -> None:
        self.stream = stream
        self.engines = engines
        self.store = store
        self.call_id = call_id
        self.name = name
        self.deaf_is_gone = deaf_is_gone
        self.heard: asyncio.Queue[Heard] = asyncio.Queue()
        self.ears = LegTranscriber(engines.asr, engines.scorer(), "caller", self.said) if ears else None
        self.reader: asyncio.Task[None] | None = None  # while listening

    @asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Read the line (and run the transcriber) for the body's length; both stop after it."""
        tag = (self.call_id or "")[:8]
        tasks: list[asyncio.Task[None]] = []
        if self.ears is not None:
            tasks.append(asyncio.create_task(self.ears.run(), name=f"{self.name}-asr-{tag}"))
        self.reader = asyncio.create_task(self._read(), name=f"{self.name}-{tag}")
        tasks.append(self.reader)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ the caller's side

    async def _read(self) -> None:
        """Every key, and the caller's audio (to the ears, or queued), until the line closes."""
        try:
            async for event in self.stream.events():
                if isinstance(event, Dtmf):
                    self.heard.put_nowait(Key(event.digit))
                elif self.ears is not None:
                    self.ears.feed(event.pcm, event.sample_rate)
                else:
                    self.heard.put_nowait(event)
        except Exception:
            log.exception("call %s: %s stopped listening", self.call_id, self.name)
            if not self.deaf_is_gone:
                return
        self.heard.put_nowait(Gone())

    def said(self, speaker: str, text: str, started: float, ended: float) -> None:
        """The transcriber's words: written down and queued.  Overridden by a dialog that must
        keep something out of the record or ignore words said over its question."""
        self.record(speaker, text, started, ended)
        self.heard.put_nowait(Words(text))

    async def next(self, deadline: float) -> Heard | None:
        """What the caller did next, or None once ``deadline`` (monotonic) has passed; words
        said before it still count while the ASR decodes them (up to ``DECODING_S`` later)."""
        latest = deadline + DECODING_S
        while True:
            if not self.heard.empty():  # heard already: counts even when the deadline has just passed
                return self.heard.get_nowait()
            now = time.monotonic()
            if now >= deadline and not (self.decoding() and now < latest):
                return None
            wait = deadline - now if now < deadline else POLL_S  # past it: only while words are decoded
            try:
                return await asyncio.wait_for(self.heard.get(), wait)
            except asyncio.TimeoutError:
                continue

    def decoding(self) -> bool:
        """Words the caller finished saying are still with the ASR: an answer may be among them."""
        if self.ears is None:
            return False
        stats = self.ears.stats
        return stats.utterances > stats.transcribed + stats.empty + stats.failures + stats.dropped

    # ------------------------------------------------------------------ the bot's side

    async def say(self, text: str) -> None:
        """``text`` in the shared TTS voice onto the line (a bot turn in the record); stops
        synthesising once the line closes."""
        rate = self.stream.output_sample_rate
        self.turn(text, speaker="bot")
        async with aclosing(self.engines.tts.stream(text, rate)) as sentences:
            async for pcm in sentences:
                if self.stream.closed:
                    return
                await self.stream.write(pcm, rate)

    async def played(self) -> None:
        """Until the caller has heard what is queued, or the line has gone: a last word must
        be heard before the line is hung up."""
        deadline = time.monotonic() + self.stream.playout().pending_ms / 1000 + PLAYED_GRACE_S
        while (self.stream.playout().pending_ms > 0 and time.monotonic() < deadline and not self.stream.closed
               and not (self.reader is not None and self.reader.done())):
            await asyncio.sleep(POLL_S)

    # ------------------------------------------------------------------ the record

    def turn(self, text: str, speaker: str = "caller") -> None:
        """A turn that happens now (a question, a key) in the record."""
        now = time.time()
        self.record(speaker, text, now, now)

    def record(self, speaker: str, text: str, started: float, ended: float) -> None:
        """A turn in the record, if there is one; a record that fails is not worth the call."""
        if self.store is None or self.call_id is None:
            return
        try:
            self.store.add_turn(self.call_id, speaker, text, started_at=started, ended_at=ended)
        except Exception:
            log.exception("call %s: could not record a %s turn", self.call_id, self.name)

    def event(self, kind: str, data: dict[str, object]) -> None:
        """An event in the record, if there is one (a dialog's outcome); never raises."""
        if self.store is None or self.call_id is None:
            return
        try:
            self.store.event(self.call_id, kind, data)
        except Exception:
            log.exception("call %s: could not record the %s's %s", self.call_id, self.name, kind)
