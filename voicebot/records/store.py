"""SQLite call records, written as the call goes: every finished turn is committed within a
commit's time, so a crash loses at most the turn in progress and the last batch of writes.

Writes never wait on the disk in the caller's thread: they are queued to the store's one
writer thread (``records.writer``), which commits them in batches, and the methods that answer
something (a call's id, a turn's seq) make it in Python: ids are uuids, a call's turn numbers
come from a counter per call (seeded from the database for a call this store did not start).
Reads go straight to their own connection (WAL mode lets them see committed turns while a call
is still running) after the writes queued before them are committed, so a read sees every
write made before it.  On start the server closes the calls a crash left open
(``close_calls_in_flight``).

A call's life is written down by its owner (``calls.py``): states ivr → queued → offered →
connected → wrap_up → ended | abandoned | transferred_out, or queued → callback → connected
for a caller called back (``CALL_STATES``), the agent it was
connected to, the queue it waited in, the agent's wrap-up (disposition, notes), and the ACD's
queue_log lines (Asterisk's shape: time, call id, queue, agent, event, data fields).  Turns are
the caller's, the bot's and the agent's.  Beside the calls: the voicemails callers left (the
audio file's path, the transcript, who handled it) and the callbacks they asked for (the
switchboard's to write as they move on).  A database written by an older version gains the
new columns and tables when it is opened.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

from voicebot.records.writer import FlushingLock, Writer

CALL_STATES = ("ivr", "queued", "offered", "callback", "connected", "wrap_up", "ended", "abandoned", "transferred_out")
FINAL_STATES = ("ended", "abandoned", "transferred_out")
OWNER_STATES = ("offered", "connected", "wrap_up", "abandoned", "transferred_out")  # end_call leaves these alone
SPEAKERS = ("caller", "bot", "agent")
CALL_FIELDS = ("agent", "queue", "disposition", "notes", "caller_name")  # what set_state may set besides the state
CALLBACK_FIELDS = ("call_id", "number", "queue", "state", "attempts", "due_at", "agent", "requested_at", "last_result",
                   "updated_at")  # what save_callback may write besides the id
CALLBACK_OPEN = ("waiting", "scheduled", "offered", "dialing", "connected")  # still to be done (handoff CallbackState)
CALLBACK_CLOSED = ("done", "failed", "cancelled")

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
    transfer_skills TEXT,
    agent TEXT,
    queue TEXT,
    disposition TEXT,
    notes TEXT,
    caller_name TEXT
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
    agent TEXT,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS queue_log (
    time REAL NOT NULL,
    call_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    agent TEXT NOT NULL,
    event TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS voicemails (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(id),
    queue TEXT NOT NULL DEFAULT '',
    caller TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL,
    duration_s REAL NOT NULL DEFAULT 0,
    audio_path TEXT,
    transcript TEXT NOT NULL DEFAULT '',
    handled INTEGER NOT NULL DEFAULT 0,
    handled_by TEXT,
    handled_at REAL,
    assigned_to TEXT,
    assigned_at REAL
);
CREATE TABLE IF NOT EXISTS callbacks (
    id TEXT PRIMARY KEY,
    call_id TEXT,
    number TEXT NOT NULL DEFAULT '',
    queue TEXT,
    state TEXT NOT NULL DEFAULT 'waiting',
    attempts INTEGER NOT NULL DEFAULT 0,
    due_at REAL,
    agent TEXT,
    requested_at REAL,
    last_result TEXT,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE INDEX IF NOT EXISTS voicemails_at ON voicemails(at);
CREATE INDEX IF NOT EXISTS voicemails_call ON voicemails(call_id);
CREATE INDEX IF NOT EXISTS callbacks_state ON callbacks(state, due_at);
CREATE INDEX IF NOT EXISTS callbacks_call ON callbacks(call_id);
CREATE INDEX IF NOT EXISTS events_call ON events(call_id, at);
CREATE INDEX IF NOT EXISTS queue_log_time ON queue_log(time);
CREATE INDEX IF NOT EXISTS queue_log_call ON queue_log(call_id, time);
CREATE INDEX IF NOT EXISTS queue_log_agent ON queue_log(agent, event);
"""

# Columns added since the first schema: an older database gets them with ALTER TABLE on open
# (whole tables added since, voicemails and callbacks, come from SCHEMA's CREATE IF NOT EXISTS).
UPGRADES = {
    "calls": (("agent", "TEXT"), ("queue", "TEXT"), ("disposition", "TEXT"), ("notes", "TEXT"),
              ("caller_name", "TEXT")),
    "turns": (("agent", "TEXT"),),
    "voicemails": (("assigned_to", "TEXT"), ("assigned_at", "REAL")),
}
# Indexes on upgraded columns: created after the upgrade.
LATE_INDEXES = "CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent, started_at);"


class RecordStore:
    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self.clock = clock
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._upgrade()
        self._db.executescript(LATE_INDEXES)
        # The writer's own connection (an in-memory database has just the one, shared under a mutex).
        mutex = threading.Lock()
        if self.path == ":memory:":
            self._writer = Writer(self._db, self.path, mutex)
        else:
            wdb = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            wdb.row_factory = sqlite3.Row
            wdb.execute("PRAGMA synchronous=NORMAL")
            self._writer = Writer(wdb, self.path)
        self._lock = FlushingLock(self._writer, self.path, mutex)  # reads: pending writes first
        self._seqs: dict[str, int] = {}  # call id -> its next turn's seq
        self._seqs_lock = threading.Lock()
        weakref.finalize(self, self._writer.close)  # a store never closed still commits what it queued

    def _upgrade(self) -> None:
        for table, columns in UPGRADES.items():
            have = {row["name"] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns:
                if name in have:
                    continue
                try:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as error:  # another process upgraded it meanwhile
                    if "duplicate column" not in str(error):
                        raise

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        """Queued to the writer thread; returns at once."""
        self._writer.put(((sql, args),))

    def _write_all(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Several statements committed together (no reader sees half); queued, returns at once."""
        self._writer.put(tuple(statements))

    def flush(self) -> None:
        """Wait until every write made so far is committed."""
        self._writer.flush()

    def _next_seq(self, call_id: str) -> int:
        with self._seqs_lock:
            seq = self._seqs.get(call_id)
        if seq is None:  # a call this store did not start (or has forgotten): ask the database
            with self._lock:
                row = self._db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM turns WHERE call_id = ?",
                                       (call_id,)).fetchone()
            seq = int(row[0])
        with self._seqs_lock:
            seq = max(seq, self._seqs.get(call_id, 0))
            self._seqs[call_id] = seq + 1
        return seq

    def _forget_seq(self, call_id: str) -> None:
        """A call is over: a turn written later (an agent leg's transcript) counts on from the database."""
        with self._seqs_lock:
            self._seqs.pop(call_id, None)

    def _event_row(self, call_id: str, kind: str, data: dict[str, Any] | None) -> tuple[str, tuple[Any, ...]]:
        return ("INSERT INTO events (call_id, at, kind, data) VALUES (?, ?, ?, ?)",
                (call_id, self.clock(), kind, json.dumps(data or {}, default=str)))

    # ------------------------------------------------------------------ writes

    def start_call(self, channel: str, caller: str = "", domain: str = "", call_id: str | None = None) -> str:
        call_id = call_id or uuid.uuid4().hex
        with self._seqs_lock:
            self._seqs[call_id] = 0
        self._write("INSERT INTO calls (id, channel, caller, domain, started_at) VALUES (?, ?, ?, ?, ?)",
                    (call_id, channel, caller, domain, self.clock()))
        self.event(call_id, "call_started", {"channel": channel, "caller": caller})
        return call_id

    def add_turn(self, call_id: str, speaker: str, text: str, started_at: float, ended_at: float | None = None,
                 intent: str | None = None, confidence: float | None = None, slots: dict[str, Any] | None = None,
                 rule: str | None = None, timings: dict[str, float] | None = None, agent: str | None = None) -> int:
        """One turn of the conversation: the caller's, the bot's, or an agent's (``agent`` is
        then the agent's id)."""
        if speaker not in SPEAKERS:
            raise ValueError(f"speaker must be one of {', '.join(SPEAKERS)}, not {speaker!r}")
        seq = self._next_seq(call_id)
        self._write(
            "INSERT INTO turns (call_id, seq, speaker, text, started_at, ended_at, intent, confidence, slots, rule,"
            " timings, agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (call_id, seq, speaker, text, started_at, ended_at, intent, confidence,
             json.dumps(slots or {}), rule, json.dumps(timings or {}), agent))
        return seq

    def update_turn(self, call_id: str, seq: int, *, timings: dict[str, float] | None = None,
                    heard: str | None = None, ended_at: float | None = None) -> None:
        def merge(db: sqlite3.Connection) -> None:  # in the writer: sees the turn's insert, queued before
            row = db.execute("SELECT timings FROM turns WHERE call_id = ? AND seq = ?", (call_id, seq)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row[0]), **(timings or {})}
            db.execute("UPDATE turns SET timings = ?, heard = COALESCE(?, heard), ended_at = COALESCE(?, ended_at)"
                       " WHERE call_id = ? AND seq = ?", (json.dumps(merged), heard, ended_at, call_id, seq))

        self._writer.put(merge)

    def set_turn_nlu(self, call_id: str, seq: int, intent: str | None, confidence: float | None,
                     slots: dict[str, Any], rule: str) -> None:
        """What the dialog understood from a caller turn, and the rule it applied."""
        self._write("UPDATE turns SET intent = ?, confidence = ?, slots = ?, rule = ? WHERE call_id = ? AND seq = ?",
                    (intent, confidence, json.dumps(slots, default=str), rule, call_id, seq))

    def event(self, call_id: str, kind: str, data: dict[str, Any] | None = None) -> None:
        self._write(*self._event_row(call_id, kind, data))

    def set_state(self, call_id: str, state: str, **fields: str | None) -> None:
        """Move the call to ``state``; ``fields`` (any of CALL_FIELDS, e.g. ``agent``, ``queue``)
        are written with it, and go into the "state" event.  A call back in 'queued' or 'ivr'
        (a missed offer, an agent's transfer, a failed transfer) has no agent until one is
        given again: an agent's past calls are found through the queue_log's CONNECT lines."""
        unknown = sorted(set(fields) - set(CALL_FIELDS))
        if unknown:
            raise TypeError(f"set_state() got unexpected fields {', '.join(unknown)};"
                            f" allowed: {', '.join(CALL_FIELDS)}")
        columns = {"state": state, **fields}
        if state in FINAL_STATES:
            self._forget_seq(call_id)
        if state in ("queued", "ivr"):
            columns.setdefault("agent", None)
        self._write_all([
            (f"UPDATE calls SET {', '.join(f'{n} = ?' for n in columns)} WHERE id = ?", (*columns.values(), call_id)),
            self._event_row(call_id, "state", {"state": state, **fields}),
        ])

    def set_agent(self, call_id: str, agent: str | None) -> None:
        """The agent the call is connected to (the desktop's "my calls" lists by it)."""
        self._write("UPDATE calls SET agent = ? WHERE id = ?", (agent, call_id))

    def set_queue(self, call_id: str, queue: str | None) -> None:
        """The queue the call waits in, or was answered from (after an overflow, the last one)."""
        self._write("UPDATE calls SET queue = ? WHERE id = ?", (queue, call_id))

    def set_wrap_up(self, call_id: str, agent: str, disposition: str, notes: str) -> None:
        """The agent's wrap-up: the latest disposition and notes stay on the call, every
        wrap-up (an agent transfer means two) stays in the events."""
        self._write_all([
            ("UPDATE calls SET disposition = ?, notes = ?, agent = COALESCE(agent, ?) WHERE id = ?",
             (disposition, notes, agent, call_id)),
            self._event_row(call_id, "wrap_up", {"agent": agent, "disposition": disposition, "notes": notes}),
        ])

    def set_transfer(self, call_id: str, queue: str, reason: str, priority: int, skills: list[str]) -> None:
        """Where the bot sent the caller; the call's state is its owner's to set (queued, transferred_out)."""
        self._write("UPDATE calls SET transfer_queue = ?, transfer_reason = ?, transfer_priority = ?,"
                    " transfer_skills = ? WHERE id = ?", (queue, reason, priority, json.dumps(skills), call_id))
        self.event(call_id, "transfer", {"queue": queue, "reason": reason, "priority": priority, "skills": skills})

    def end_call(self, call_id: str, outcome: str) -> None:
        """The bot's part of the call is over.  A call its owner has moved on (offered,
        connected, wrap_up, abandoned, transferred_out) keeps that state; anything else,
        'queued' included, is 'ended' — the owner's close_call writes the true final state."""
        owned = ", ".join(f"'{s}'" for s in OWNER_STATES)
        self._write("UPDATE calls SET ended_at = ?, outcome = COALESCE(outcome, ?),"
                    f" state = CASE WHEN state IN ({owned}) THEN state ELSE 'ended' END WHERE id = ?",
                    (self.clock(), outcome, call_id))
        self.event(call_id, "call_ended", {"outcome": outcome})

    def close_call(self, call_id: str, state: str, outcome: str) -> None:
        """The caller's side of the call is over, for its owner: end time, state and outcome (an
        outcome already written is kept) in one write.  The state is a final one, or 'wrap_up'
        when the agent still has the call's paperwork to do (set_state moves it on).  An
        abandoned call had no agent, even if one's phone was ringing for it when the caller left
        (the ring is in the queue_log)."""
        if state not in CALL_STATES:
            raise ValueError(f"a call's state is one of {', '.join(CALL_STATES)}, not {state!r}")
        if state in FINAL_STATES:
            self._forget_seq(call_id)
        agent = ", agent = NULL" if state == "abandoned" else ""
        self._write_all([
            (f"UPDATE calls SET ended_at = ?, state = ?, outcome = COALESCE(outcome, ?){agent} WHERE id = ?",
             (self.clock(), state, outcome, call_id)),
            self._event_row(call_id, "state", {"state": state, "outcome": outcome}),
        ])

    def reopen_call(self, call_id: str, data: dict[str, Any]) -> None:
        """A transfer failed and the caller is back with the bot: the call is live again (the
        transfer and its failure stay in the events)."""
        self._write("UPDATE calls SET ended_at = NULL, outcome = NULL, state = 'ivr', transfer_queue = NULL,"
                    " transfer_reason = NULL, transfer_priority = NULL, transfer_skills = NULL WHERE id = ?", (call_id,))
        self.event(call_id, "transfer_failed", data)

    def close_calls_in_flight(self, reason: str = "the server stopped during the call") -> list[str]:
        """Close the calls a crash left open.  One the caller was still on (ivr, queued, offered,
        connected; or a final state without an end time, such as a bridged transfer out) gets
        outcome 'abnormal', state 'ended' (a final state is kept) and ends at the last thing
        recorded of it; one in 'wrap_up' (the caller had gone, the agent's paperwork died with
        the server) is 'ended' and keeps its outcome and end time.  A "state" event says why.
        A call waiting to be called back (state 'callback') is not in flight: the caller hung up
        on purpose and the server restores the callback.
        The server calls this on start, before it takes calls; returns the ids closed."""
        now = self.clock()
        final = ", ".join(f"'{s}'" for s in FINAL_STATES)

        def sweep(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT id, state, started_at, ended_at, outcome FROM calls"
                              f" WHERE (state NOT IN ({final}) OR ended_at IS NULL) AND state != 'callback'").fetchall()
            for call_id, state, started_at, ended_at, outcome in rows:
                closed = state if state in FINAL_STATES else "ended"
                if state == "wrap_up":
                    ended_at = ended_at if ended_at is not None else now
                else:
                    last = db.execute("SELECT MAX(t) FROM (SELECT MAX(at) AS t FROM events WHERE call_id = ?"
                                      " UNION ALL SELECT MAX(COALESCE(ended_at, started_at)) FROM turns WHERE call_id = ?)",
                                      (call_id, call_id)).fetchone()[0]
                    ended_at, outcome = max(started_at, ended_at or 0.0, last or 0.0), "abnormal"
                db.execute("UPDATE calls SET state = ?, outcome = ?, ended_at = ? WHERE id = ?",
                           (closed, outcome, ended_at, call_id))
                db.execute(*self._event_row(call_id, "state", {"state": closed, "outcome": outcome, "was": state,
                                                               "reason": reason}))
            return [row[0] for row in rows]

        return self._writer.call(sweep)

    def log_queue_event(self, ev: Any) -> None:
        """One queue_log line (a handoff.events.LogEvent, or anything with its fields:
        time, call_id, queue, agent, event, data); a missing name is written as NONE."""
        self._write("INSERT INTO queue_log (time, call_id, queue, agent, event, data) VALUES (?, ?, ?, ?, ?, ?)",
                    (float(ev.time), ev.call_id or "NONE", ev.queue or "NONE", ev.agent or "NONE", ev.event,
                     json.dumps(["" if d is None else str(d) for d in ev.data or ()])))

    def add_voicemail(self, call_id: str, queue: str, caller: str, at: float, duration_s: float,
                      audio_path: str | None, transcript: str, voicemail_id: str | None = None) -> str:
        """A voicemail the caller of ``call_id`` left for ``queue``; returns its id (``voicemail_id``
        when given: the file it names was written under that id first)."""
        voicemail_id = voicemail_id or uuid.uuid4().hex
        self._write("INSERT INTO voicemails (id, call_id, queue, caller, at, duration_s, audio_path, transcript)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (voicemail_id, call_id, queue or "", caller or "", float(at), float(duration_s),
                     None if audio_path is None else str(audio_path), transcript or ""))
        return voicemail_id

    def set_voicemail_handled(self, voicemail_id: str, by: str) -> bool:
        """Mark the voicemail handled by ``by``, now.  True when this call marked it; False when
        it was handled already (the first handler and time stay) or does not exist.  Waits for
        the commit, so two agents pressing at once get one True between them."""
        at = self.clock()

        def mark(db: sqlite3.Connection) -> bool:
            cursor = db.execute("UPDATE voicemails SET handled = 1, handled_by = ?, handled_at = ?"
                                " WHERE id = ? AND handled = 0", (by, at, voicemail_id))
            return cursor.rowcount == 1

        return bool(self._writer.call(mark))

    def assign_voicemail(self, agent: str, queues: Collection[str]) -> dict[str, Any] | None:
        """Give ``agent`` the oldest unhandled voicemail of ``queues`` nobody has, as a work
        item; None when they already have one or none is left.  In the writer, so two agents
        coming free at once never get the same message."""
        queues = list(queues)
        if not queues:
            return None
        at = self.clock()
        marks = ",".join("?" * len(queues))

        def assign(db: sqlite3.Connection) -> str | None:
            mine = db.execute("SELECT 1 FROM voicemails WHERE assigned_to = ? AND handled = 0 LIMIT 1",
                              (agent,)).fetchone()
            if mine is not None:
                return None
            row = db.execute(f"SELECT id FROM voicemails WHERE handled = 0 AND assigned_to IS NULL AND queue IN"
                             f" ({marks}) ORDER BY at, rowid LIMIT 1", queues).fetchone()
            if row is None:
                return None
            db.execute("UPDATE voicemails SET assigned_to = ?, assigned_at = ? WHERE id = ?", (agent, at, row["id"]))
            return str(row["id"])

        voicemail_id = self._writer.call(assign)
        return self.voicemail(voicemail_id) if voicemail_id else None

    def save_callback(self, row: dict[str, Any]) -> None:
        """Insert or update the callback ``row["id"]``: an update writes only the fields the row
        names (any of CALLBACK_FIELDS), so the switchboard can send just what changed.
        ``updated_at`` defaults to now, and ``requested_at`` of a new callback too."""
        callback_id = row.get("id")
        if not isinstance(callback_id, str) or not callback_id:
            raise ValueError("a callback row needs its 'id'")
        unknown = sorted(set(row) - {"id", *CALLBACK_FIELDS})
        if unknown:
            raise TypeError(f"save_callback() got unexpected fields {', '.join(unknown)};"
                            f" allowed: id, {', '.join(CALLBACK_FIELDS)}")
        now = self.clock()
        fields = {name: row[name] for name in CALLBACK_FIELDS if name in row}
        fields.setdefault("updated_at", now)
        inserted = {"requested_at": now, **fields}
        names = ["id", *inserted]
        updates = ", ".join(f"{name} = excluded.{name}" for name in fields)
        self._write(f"INSERT INTO callbacks ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                    f" ON CONFLICT(id) DO UPDATE SET {updates}", (callback_id, *inserted.values()))

    # ------------------------------------------------------------------ reads

    def list_calls(self, limit: int = 100, offset: int = 0, agent: str | None = None) -> list[dict[str, Any]]:
        """Newest first; with ``agent``, the calls that agent is or was connected to."""
        with self._lock:
            if agent is None:
                rows = self._db.execute("SELECT * FROM calls ORDER BY started_at DESC LIMIT ? OFFSET ?",
                                        (limit, offset)).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM calls WHERE agent = ? OR id IN"
                    " (SELECT call_id FROM queue_log WHERE agent = ? AND event = 'CONNECT')"
                    " ORDER BY started_at DESC LIMIT ? OFFSET ?", (agent, agent, limit, offset)).fetchall()
        return [_call(dict(r)) for r in rows]

    def get_call(self, call_id: str) -> dict[str, Any] | None:
        """The call with its ``turns`` and ``events`` as stored, its ``queue`` (queue_log
        lines), the ``voicemails`` its caller left, and its ``transcript`` (every turn, caller,
        bot and agent, in the order they began; turns written late, such as an agent leg's
        transcripts, fall into place)."""
        with self._lock:
            row = self._db.execute("SELECT * FROM calls WHERE id = ?", (call_id,)).fetchone()
            if row is None:
                return None
            turns = self._db.execute("SELECT * FROM turns WHERE call_id = ? ORDER BY seq", (call_id,)).fetchall()
            events = self._db.execute("SELECT * FROM events WHERE call_id = ? ORDER BY at, rowid", (call_id,)).fetchall()
            queue = self._db.execute("SELECT * FROM queue_log WHERE call_id = ? ORDER BY time, rowid",
                                     (call_id,)).fetchall()
            voicemails = self._db.execute("SELECT * FROM voicemails WHERE call_id = ? ORDER BY at, rowid",
                                          (call_id,)).fetchall()
        call = _call(dict(row))
        call["turns"] = [{**dict(t), "slots": json.loads(t["slots"]), "timings": json.loads(t["timings"])} for t in turns]
        call["events"] = [{"at": e["at"], "kind": e["kind"], "data": json.loads(e["data"])} for e in events]
        call["queue"] = [_queue_row(q) for q in queue]
        call["voicemails"] = [_voicemail(v) for v in voicemails]
        call["transcript"] = [{"speaker": t["speaker"], "text": t["text"], "at": t["started_at"], "agent": t["agent"],
                               "intent": t["intent"], "confidence": t["confidence"]}
                              for t in sorted(turns, key=lambda t: (t["started_at"], t["seq"]))]
        return call

    def queue_log(self, since: float | None = None, until: float | None = None,
                  limit: int = 10000) -> list[dict[str, Any]]:
        """queue_log lines with since <= time < until (either end open when None), oldest first."""
        where, args = [], []
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if until is not None:
            where.append("time < ?")
            args.append(until)
        sql = "SELECT * FROM queue_log" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY time, rowid LIMIT ?", (*args, limit)).fetchall()
        return [_queue_row(r) for r in rows]

    def report_rows(self, since: float, until: float) -> dict[str, list[dict[str, Any]]]:
        """What the reports (``records.kpis``) read of the calls started in [since, until): the
        calls' rows as stored, their events (data decoded) and their caller turns' intents."""
        span = "SELECT id FROM calls WHERE started_at >= ? AND started_at < ?"
        with self._lock:
            calls = self._db.execute("SELECT * FROM calls WHERE started_at >= ? AND started_at < ?"
                                     " ORDER BY started_at", (since, until)).fetchall()
            events = self._db.execute(f"SELECT call_id, at, kind, data FROM events WHERE call_id IN ({span})"
                                      " ORDER BY at, rowid", (since, until)).fetchall()
            intents = self._db.execute(f"SELECT call_id, seq, started_at, intent FROM turns WHERE call_id IN ({span})"
                                       " AND speaker = 'caller' AND intent IS NOT NULL ORDER BY started_at, seq",
                                       (since, until)).fetchall()
        return {"calls": [dict(r) for r in calls], "intents": [dict(r) for r in intents],
                "events": [{**dict(e), "data": json.loads(e["data"])} for e in events]}

    def queue_events(self, call_id: str) -> list[dict[str, Any]]:
        """One call's queue_log lines, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM queue_log WHERE call_id = ? ORDER BY time, rowid",
                                    (call_id,)).fetchall()
        return [_queue_row(r) for r in rows]

    def voicemails(self, queues: Collection[str] | None = None, handled: bool | None = None,
                   limit: int = 200) -> list[dict[str, Any]]:
        """Newest first; with ``queues``, those left for one of them (none for an empty
        collection: an agent who serves no queue sees none); with ``handled``, only those handled
        or only those not."""
        where: list[str] = []
        args: list[Any] = []
        if queues is not None:
            names = sorted(set(queues))
            if not names:
                return []
            where.append(f"queue IN ({', '.join('?' * len(names))})")
            args += names
        if handled is not None:
            where.append("handled = ?")
            args.append(1 if handled else 0)
        sql = "SELECT * FROM voicemails" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY at DESC, rowid DESC LIMIT ?", (*args, limit)).fetchall()
        return [_voicemail(r) for r in rows]

    def voicemail(self, voicemail_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM voicemails WHERE id = ?", (voicemail_id,)).fetchone()
        return None if row is None else _voicemail(row)

    def callbacks(self, queues: Collection[str] | None = None, states: Collection[str] | None = None,
                  limit: int = 200) -> list[dict[str, Any]]:
        """The open ones first, soonest due first (a scheduler reads the head; one waiting in its
        queue with no due time counts from its request), then the closed ones, latest first;
        filtered by ``queues`` and ``states`` as ``voicemails`` filters by queue."""
        where: list[str] = []
        args: list[Any] = []
        for column, wanted in (("queue", queues), ("state", states)):
            if wanted is None:
                continue
            names = sorted(set(wanted))
            if not names:
                return []
            where.append(f"{column} IN ({', '.join('?' * len(names))})")
            args += names
        closed = ", ".join(f"'{s}'" for s in CALLBACK_CLOSED)
        sql = ("SELECT * FROM callbacks" + (f" WHERE {' AND '.join(where)}" if where else "")
               + f" ORDER BY state IN ({closed}),"
               f" CASE WHEN state IN ({closed}) THEN NULL ELSE COALESCE(due_at, requested_at) END,"
               " COALESCE(updated_at, requested_at) DESC, rowid DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [dict(r) for r in rows]

    def callback(self, callback_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM callbacks WHERE id = ?", (callback_id,)).fetchone()
        return None if row is None else dict(row)

    def close(self) -> None:
        """Commit every queued write, then close."""
        self._writer.close()  # it closes its own connection
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ recordings, retention, data requests

    def recording(self, call_id: str) -> dict[str, Any] | None:
        """The call's recording as its last ``recording`` event says (path, sample_rate, channels,
        and duration_s once finished), or None: never recorded, or deleted since."""
        with self._lock:
            rows = self._db.execute("SELECT kind, data FROM events WHERE call_id = ? AND kind IN"
                                    " ('recording', 'recording_deleted', 'retention_purged') ORDER BY at, rowid",
                                    (call_id,)).fetchall()
        if not rows or rows[-1]["kind"] != "recording":
            return None
        return dict(json.loads(rows[-1]["data"]))

    def recording_paths(self, call_ids: Iterable[str]) -> dict[str, list[str]]:
        """Every audio file the records of these calls name, by call: the files of their
        ``recording`` events, then their voicemails' (retention and erasure delete both)."""
        paths: dict[str, list[str]] = {}
        for chunk in self._id_chunks(call_ids):
            marks = ", ".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(f"SELECT call_id, data FROM events WHERE kind = 'recording' AND call_id IN"
                                        f" ({marks}) ORDER BY at, rowid", chunk).fetchall()
                voicemails = self._db.execute(f"SELECT call_id, audio_path FROM voicemails WHERE call_id IN ({marks})"
                                              " AND audio_path IS NOT NULL ORDER BY at, rowid", chunk).fetchall()
            named = [(row["call_id"], json.loads(row["data"]).get("path")) for row in rows]
            named += [(row["call_id"], row["audio_path"]) for row in voicemails]
            for call_id, path in named:
                if path and path not in paths.setdefault(call_id, []):
                    paths[call_id].append(path)
        return paths

    def calls_of_caller(self, caller: str) -> list[str]:
        """Every call from this caller number, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM calls WHERE caller = ? ORDER BY started_at", (caller,)).fetchall()
        return [row["id"] for row in rows]

    def calls_to_purge(self, before: float) -> list[str]:
        """Calls started before ``before`` that still hold words, a recording or a voicemail."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM calls c WHERE started_at < ? AND (EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.id)"
                " OR EXISTS (SELECT 1 FROM events e WHERE e.call_id = c.id AND e.kind IN ('recording', 'barge_in_heard'))"
                " OR EXISTS (SELECT 1 FROM voicemails v WHERE v.call_id = c.id))"
                " ORDER BY started_at", (before,)).fetchall()
        return [row["id"] for row in rows]

    def delete_calls(self, call_ids: Iterable[str]) -> dict[str, int]:
        """Every row of these calls (a caller's request to be forgotten): the call, its turns,
        events and queue_log lines, and its voicemails and callbacks (their files are the
        caller's to delete: ``recording_paths``).  Returns how many rows of each table go;
        voicemails and callbacks are named only when there were some."""
        counts = {"calls": 0, "turns": 0, "events": 0, "queue_log": 0, "voicemails": 0, "callbacks": 0}
        for chunk in self._id_chunks(call_ids):
            marks = ", ".join("?" * len(chunk))
            where = {"calls": f"id IN ({marks})", **{table: f"call_id IN ({marks})" for table in list(counts)[1:]}}
            with self._lock:
                for table, condition in where.items():
                    counts[table] += int(self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {condition}",
                                                          chunk).fetchone()[0])
            self._write_all([(f"DELETE FROM {table} WHERE {condition}", tuple(chunk))
                             for table, condition in where.items()])
        return {table: n for table, n in counts.items() if n or table not in ("voicemails", "callbacks")}

    def purge_transcripts(self, call_ids: Iterable[str], reason: str) -> dict[str, int]:
        """Forget what was said on these calls (their turns, the words in barge-in events, their
        voicemails, and the recording events; the files are the caller's to delete), keeping each
        call, its states and its queue_log lines for the reports; a ``retention_purged`` event
        says why.  Voicemails are counted only when there were some."""
        counts = {"turns": 0, "events": 0, "voicemails": 0}
        for chunk in self._id_chunks(call_ids):
            marks = ", ".join("?" * len(chunk))
            events = f"call_id IN ({marks}) AND kind IN ('recording', 'barge_in_heard')"
            where = {"turns": f"call_id IN ({marks})", "events": events, "voicemails": f"call_id IN ({marks})"}
            with self._lock:
                for table, condition in where.items():
                    counts[table] += int(self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {condition}",
                                                          chunk).fetchone()[0])
            self._write_all([*((f"DELETE FROM {table} WHERE {condition}", tuple(chunk))
                               for table, condition in where.items()),
                             *(self._event_row(call_id, "retention_purged", {"reason": reason}) for call_id in chunk)])
        return {table: n for table, n in counts.items() if n or table != "voicemails"}

    @staticmethod
    def _id_chunks(call_ids: Iterable[str], size: int = 500) -> list[list[str]]:
        """Call ids in pieces small enough for one ``IN (...)``."""
        ids = list(dict.fromkeys(call_ids))
        return [ids[i:i + size] for i in range(0, len(ids), size)]


def _call(row: dict[str, Any]) -> dict[str, Any]:
    """A calls row for the API: the bot's transfer request as one ``transfer`` object, and the
    queue column as ``queue_name`` (``queue`` in a full record is the call's queue_log)."""
    skills = row.pop("transfer_skills")
    row["transfer"] = None if row["transfer_queue"] is None else {
        "queue": row.pop("transfer_queue"), "reason": row.pop("transfer_reason"),
        "priority": row.pop("transfer_priority"), "skills": json.loads(skills or "[]")}
    for key in ("transfer_queue", "transfer_reason", "transfer_priority"):
        row.pop(key, None)
    row["queue_name"] = row.pop("queue", None)
    return row


def _voicemail(row: sqlite3.Row) -> dict[str, Any]:
    """A voicemails row with ``handled`` as a bool."""
    voicemail = dict(row)
    voicemail["handled"] = bool(voicemail["handled"])
    return voicemail


def _queue_row(row: sqlite3.Row) -> dict[str, Any]:
    return {"time": row["time"], "call_id": row["call_id"], "queue": row["queue"], "agent": row["agent"],
            "event": row["event"], "data": json.loads(row["data"])}
