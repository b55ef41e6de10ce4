"""A caller's data, on request and on a schedule: export one call, delete everything of a
caller number, and forget recordings and transcripts after the retention period.

``voicebot records export --call ID`` and ``voicebot records delete --caller NUMBER`` are the
command line's side (a caller's access and erasure requests); ``retention_loop`` runs in the
server, at start and then daily.  Retention keeps each call's row, states, events without
words and queue_log lines, so the contact centre's reports still add up; what was said (the
turns, the words in barge-in events) and the recording go, and a ``retention_purged`` event says
when and why.  Every removal is logged with what it removed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.records.store import RecordStore

log = logging.getLogger(__name__)

DAY_S = 86400.0


@dataclass
class Removed:
    """What a deletion removed: call ids, rows by table, files."""

    calls: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        rows = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        out = [f"call {call_id}" for call_id in self.calls]
        out.append(f"rows: {rows or 'none'}")
        out += [f"file {path}" for path in self.files]
        return out


def export_call(store: RecordStore, call_id: str) -> dict[str, Any] | None:
    """One call as JSON-ready data: the record (turns with their timings and what the bot
    understood, events, queue_log lines as ``queue``, the ``transcript``) and its recording."""
    record = store.get_call(call_id)
    if record is None:
        return None
    return {**record, "recording": store.recording(call_id)}


def delete_caller(store: RecordStore, caller: str, recordings_dir: Path | None = None) -> Removed:
    """Everything of every call from ``caller``: records, turns, events, queue_log lines and
    recording files (those the records name, and ``<call id>.wav`` in ``recordings_dir``)."""
    removed = Removed(calls=store.calls_of_caller(caller))
    if not removed.calls:
        return removed
    removed.files = [f for files in _delete_files(store, removed.calls, recordings_dir).values() for f in files]
    removed.rows = store.delete_calls(removed.calls)
    log.info("deleted the data of caller %s: %d calls (%s), %d recordings", caller, len(removed.calls),
             ", ".join(f"{n} {t}" for t, n in removed.rows.items()), len(removed.files))
    return removed


def purge_expired(store: RecordStore, retention_days: float, recordings_dir: Path | None = None,
                  now: float | None = None) -> Removed:
    """Recordings and transcripts of calls older than ``retention_days`` (0: keep for ever),
    and any recording file in ``recordings_dir`` older than that (one a crash left behind)."""
    removed = Removed()
    if retention_days <= 0:
        return removed
    cutoff = (time.time() if now is None else now) - retention_days * DAY_S
    removed.calls = store.calls_to_purge(cutoff)
    if removed.calls:
        files = _delete_files(store, removed.calls, recordings_dir)
        removed.rows = store.purge_transcripts(removed.calls, f"older than {retention_days:g} days")
        for call_id in removed.calls:
            removed.files += files.get(call_id, [])
            log.info("retention: removed the transcript%s of call %s",
                     f" and recording {', '.join(files[call_id])}" if files.get(call_id) else "", call_id)
    if recordings_dir is not None and recordings_dir.is_dir():
        for path in sorted(recordings_dir.glob("*.wav")):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed.files.append(str(path))
                    log.info("retention: removed recording %s (no call record names it)", path)
            except FileNotFoundError:
                continue
    if removed.calls or removed.files:
        log.info("retention (%g days): %d calls purged (%s), %d recording files deleted", retention_days,
                 len(removed.calls), ", ".join(f"{n} {t}" for t, n in removed.rows.items()) or "no rows",
                 len(removed.files))
    return removed


async def retention_loop(store: RecordStore, retention_days: float, recordings_dir: Path | None = None,
                         every_s: float = DAY_S) -> None:
    """Purge at once, then every ``every_s``, off the event loop; a failure is logged and the
    next run tries again.  The server runs this for as long as it serves."""
    if retention_days <= 0:
        log.info("retention: recordings and transcripts are kept (retention_days is 0)")
        return
    while True:
        try:
            await asyncio.to_thread(purge_expired, store, retention_days, recordings_dir)
        except Exception:
            log.exception("retention job failed; it runs again in %.0f s", every_s)
        await asyncio.sleep(every_s)


def _delete_files(store: RecordStore, call_ids: list[str], recordings_dir: Path | None) -> dict[str, list[str]]:
    """The recordings of these calls, deleted: by call, the files that were there."""
    named = store.recording_paths(call_ids)
    deleted: dict[str, list[str]] = {}
    for call_id in call_ids:
        candidates = [Path(p) for p in named.get(call_id, [])]
        if recordings_dir is not None:
            candidates.append(recordings_dir / f"{call_id}.wav")
        for path in dict.fromkeys(candidates):
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("could not delete recording %s: %s", path, exc)
                continue
            deleted.setdefault(call_id, []).append(str(path))
    return deleted
