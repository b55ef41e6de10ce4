"""Voicemail: the message a caller leaves for a queue, kept as a 16-bit mono WAV named by the
voicemail's id in one folder, and a row in the record store (call, queue, caller number, time,
length, transcript, and who handled it).

The folder is ``voicemail`` beside the recordings folder by default (:func:`default_dir`).  The
web API serves a file only through :meth:`VoicemailBox.audio_path`, which never gives a path
outside the folder, whatever the database says.  Retention and erasure find the files through
``RecordStore.recording_paths`` and delete them with the calls' recordings.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
import wave
from pathlib import Path

from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what an id may look like; anything else is not looked up


def default_dir(recordings_dir: Path | str) -> Path:
    """Voicemail lives beside the recordings (``<records>/voicemail`` next to ``recordings``)."""
    return Path(recordings_dir).resolve().parent / "voicemail"


class VoicemailBox:
    """Where voicemails are written and read back.  File writes block: the server calls
    :meth:`save` off the event loop (``asyncio.to_thread``)."""

    def __init__(self, folder: Path, store: RecordStore) -> None:
        self.folder = Path(folder).resolve()
        self.store = store

    def save(self, call_id: str, queue: str, caller: str, pcm: bytes, sample_rate: int, transcript: str,
             duration_s: float) -> str:
        """Write ``pcm`` (16-bit mono at ``sample_rate``) as ``<folder>/<id>.wav`` and record the
        voicemail; returns its id.  The file is complete before the row names it (written under a
        temporary name, then renamed), so the desktop never plays half a message."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {sample_rate}")
        voicemail_id = uuid.uuid4().hex
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{voicemail_id}.wav"
        partial = path.with_suffix(".part")
        try:
            with wave.open(str(partial), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(sample_rate)
                out.writeframes(pcm[:len(pcm) - len(pcm) % 2])
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        self.store.add_voicemail(call_id, queue, caller, self.store.clock(), duration_s, str(path), transcript,
                                 voicemail_id=voicemail_id)
        log.info("voicemail %s of call %s for queue %s: %.1f s", voicemail_id, call_id, queue, duration_s)
        return voicemail_id

    def audio_path(self, voicemail_id: str) -> Path | None:
        """The voicemail's file, or None: unknown id, no file (deleted since), or a path the
        record names outside this folder (never served)."""
        if not _ID.match(voicemail_id):
            return None
        row = self.store.voicemail(voicemail_id)
        if row is None or not row.get("audio_path"):
            return None
        path = Path(row["audio_path"]).resolve()
        if not path.is_relative_to(self.folder):
            log.warning("voicemail %s names %s, outside %s: not served", voicemail_id, path, self.folder)
            return None
        return path if path.is_file() else None
