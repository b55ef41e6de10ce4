"""SQLite call records, written as the call goes: every finished turn is committed at once,
so a crash loses at most the turn in progress.

One connection per store, used from one thread at a time (the event loop's); WAL mode lets
readers (the HTTP API) see committed turns while a call is still running.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    caller TEXT NOT NULL DEFAULT '',
    domain TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL DEFAULT 'ivr',
    outcome TEXT,
    transfer_queue TEXT,
    transfer_reason TEXT,
    transfer_priority INTEGER,
    transfer_skills TEXT
);
CREATE TABLE IF NOT EXISTS turns (
    call_id TEXT NOT NULL REFERENCES calls(id),
    seq INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    intent TEXT,
    confidence REAL,
    slots TEXT NOT NULL DEFAULT '{}',
    rule TEXT,
    timings TEXT NOT NULL DEFAULT '{}',
    heard TEXT,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE INDEX IF NOT EXISTS events_call ON events(call_id, at);
"""


class RecordStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # ------------------------------------------------------------------ writes

    def start_call(self, channel: str, caller: str = "", domain: str = "", call_id: str | None = None) -> str:
        call_id = call_id or uuid.uuid4().hex
        self._write("INSERT INTO calls (id, channel, caller, domain, started_at) VALUES (?, ?, ?, ?, ?)",
                    (call_id, channel, caller, domain, time.time()))
        self.event(call_id, "call_started", {"channel": channel, "caller": caller})
        return call_id

    def add_turn(self, call_id: str, speaker: str, text: str, started_at: float, ended_at: float | None = None,
                 intent: str | None = None, confidence: float | None = None, slots: dict[str, Any] | None = None,
                 rule: str | None = None, timings: dict[str, float] | None = None) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM turns WHERE call_id = ?", (call_id,)).fetchone()
            seq = int(row[0])
            self._db.execute(
                "INSERT INTO turns (call_id, seq, speaker, text, started_at, ended_at, intent, confidence, slots, rule, timings)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, seq, speaker, text, started_at, ended_at, intent, confidence,
                 json.dumps(slots or {}), rule, json.dumps(timings or {})))
        return seq

    def update_turn(self, call_id: str, seq: int, *, timings: dict[str, float] | None = None,
                    heard: str | None = None, ended_at: float | None = None) -> None:
        with self._lock:
            row = self._db.execute("SELECT timings FROM turns WHERE call_id = ? AND seq = ?", (call_id, seq)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row["timings"]), **(timings or {})}
            self._db.execute("UPDATE turns SET timings = ?, heard = COALESCE(?, heard), ended_at = COALESCE(?, ended_at)"
                             " WHERE call_id = ? AND seq = ?", (json.dumps(merged), heard, ended_at, call_id, seq))

    def set_turn_nlu(self, call_id: str, seq: int, intent: str | None, confidence: float | None,
                     slots: dict[str, Any], rule: str) -> None:
        """What the dialog understood from a caller turn, and the rule it applied."""
        self._write("UPDATE turns SET intent = ?, confidence = ?, slots = ?, rule = ? WHERE call_id = ? AND seq = ?",
                    (intent, confidence, json.dumps(slots, default=str), rule, call_id, seq))

    def event(self, call_id: str, kind: str, data: dict[str, Any] | None = None) -> None:
        self._write("INSERT INTO events (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
                    (call_id, time.time(), kind, json.dumps(data or {}, default=str)))

    def set_state(self, call_id: str, state: str) -> None:
        self._write("UPDATE calls SET state = ? WHERE id = ?", (state, call_id))
        self.event(call_id, "state", {"state": state})

    def set_transfer(self, call_id: str, queue: str, reason: str, priority: int, skills: list[str]) -> None:
        self._write("UPDATE calls SET state = 'queued', transfer_queue = ?, transfer_reason = ?, transfer_priority = ?,"
                    " transfer_skills = ? WHERE id = ?", (queue, reason, priority, json.dumps(skills), call_id))
        self.event(call_id, "transfer", {"queue": queue, "reason": reason, "priority": priority, "skills": skills})

    def end_call(self, call_id: str, outcome: str) -> None:
        self._write("UPDATE calls SET ended_at = ?, outcome = COALESCE(outcome, ?),"
                    " state = CASE WHEN state = 'queued' THEN state ELSE 'ended' END WHERE id = ?",
                    (time.time(), outcome, call_id))
        self.event(call_id, "call_ended", {"outcome": outcome})

    def reopen_call(self, call_id: str, data: dict[str, Any]) -> None:
        """A transfer failed and the caller is back with the bot: the call is live again (the
        transfer and its failure stay in the events)."""
        self._write("UPDATE calls SET ended_at = NULL, outcome = NULL, state = 'ivr', transfer_queue = NULL,"
                    " transfer_reason = NULL, transfer_priority = NULL, transfer_skills = NULL WHERE id = ?", (call_id,))
        self.event(call_id, "transfer_failed", data)

    def finish_call(self, call_id: str, state: str = "ended") -> None:
        """The last leg of a call that went on after the bot (a bridged agent) has hung up."""
        self._write("UPDATE calls SET ended_at = ?, state = ? WHERE id = ?", (time.time(), state, call_id))
        self.event(call_id, "state", {"state": state})

    # ------------------------------------------------------------------ reads

    def list_calls(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM calls ORDER BY started_at DESC LIMIT ? OFFSET ?",
                                    (limit, offset)).fetchall()
        return [_call(dict(r)) for r in rows]

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                return None
            turns = self._db.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY seq", (call_id,)).fetchall()
            events = self._db.execute("SELECT * FROM events WHERE call_id = ? ORDER BY at, rowid", (call_id,)).fetchall()
        call = _call(dict(row))
        call["turns"] = [{**dict(t), "slots": json.loads(t["slots"]), "timings": json.loads(t["timings"])} for t in turns]
        call["events"] = [{"at": e["at"], "kind": e["kind"], "data": json.loads(e["data"])} for e in events]
        return call

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _call(row: dict[str, Any]) -> dict[str, Any]:
    skills = row.pop("transfer_skills")
    row["transfer"] = None if row["transfer_queue"] is None else {
        "queue": row.pop("transfer_queue"), "reason": row.pop("transfer_reason"),
        "priority": row.pop("transfer_priority"), "skills": json.loads(skills or "[]")}
    for key in ("transfer_queue", "transfer_reason", "transfer_priority"):
        row.pop(key, None)
    return row
