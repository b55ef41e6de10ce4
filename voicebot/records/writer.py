"""The record store's one writer: a thread that owns a SQLite connection and commits what
callers queue, so no record write ever waits on the disk in the caller's thread (the event
loop's, in the server).

Writes are queued and forgotten: the thread takes everything queued so far, runs it in one
transaction (each write in its own savepoint, so one failing write is logged and undone
without taking its neighbours with it) and commits; a batch is committed as soon as the
previous commit is done, so a finished turn is on disk within a commit's time (milliseconds
in WAL mode) and a crash loses at most the batch being written.  ``flush()`` waits until
everything queued before it is committed: reads call it first, so they see every write made
before them.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

Statement = tuple[str, tuple[Any, ...]]
# A write: statements committed together, or a function run on the connection (a
# read-modify-write that must see the writes queued before it).
Write = Sequence[Statement] | Callable[[sqlite3.Connection], Any]

BATCH_MAX = 500  # writes per transaction: a backlog is committed in pieces, not one long lock

_STOP = object()

# Every open writer by database file: a read in one store of the process flushes the others on
# the same file too, so a second store opened on it reads what the first one wrote.
_open: dict[str, weakref.WeakSet[Writer]] = {}
_open_lock = threading.Lock()


class Writer:
    def __init__(self, db: sqlite3.Connection, path: str, mutex: threading.Lock | None = None) -> None:
        """``db`` is used from the writer thread only; ``mutex``, when given, is held around
        each batch (an in-memory database has one connection, shared with its readers)."""
        self._db = db
        self._path = path
        self._mutex = mutex
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._queued = 0  # writes put so far
        self._committed = 0  # of those, how many are done
        self.failed = 0  # writes that raised, were rolled back and logged
        self.closed = False
        self._thread = threading.Thread(target=self._run, name=f"records-writer:{path}", daemon=True)
        self._thread.start()
        if path != ":memory:":
            with _open_lock:
                _open.setdefault(path, weakref.WeakSet()).add(self)

    def put(self, write: Write) -> None:
        if self.closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        with self._done:
            self._queued += 1
        self._queue.put(write)

    def flush(self) -> None:
        """Wait until every write queued so far is committed (or failed and logged)."""
        if threading.current_thread() is self._thread:
            return
        with self._done:
            target = self._queued
            while self._committed < target and self._thread.is_alive():
                self._done.wait(0.5)

    def call(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``work`` on the writer's connection after everything queued before it (in its own
        savepoint, committed with its batch), wait, and return what it returned (or raise what
        it raised)."""
        outcome: dict[str, Any] = {}

        def run(db: sqlite3.Connection) -> None:
            try:
                outcome["value"] = work(db)
            except BaseException as error:
                outcome["error"] = error
                raise

        self.put(run)
        self.flush()
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def close(self) -> None:
        """Commit what is queued, then stop the thread; it closes its connection unless the
        connection is shared (``mutex``)."""
        if self.closed:
            return
        self.closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:  # a store collected on the writer's own thread
            self._thread.join()
        with _open_lock:
            peers = _open.get(self._path)
            if peers is not None:
                peers.discard(self)
                if not peers:
                    del _open[self._path]

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            writes = [item for item in batch if item is not _STOP]
            if writes:
                self._commit(writes)
            with self._done:
                self._committed += len(writes)
                self._done.notify_all()
            if stop:
                if self._mutex is None:  # the connection is the writer's own
                    self._db.close()
                return

    def _commit(self, writes: list[Write]) -> None:
        if self._mutex is not None:
            self._mutex.acquire()
        try:
            self._db.execute("BEGIN")
            for write in writes:
                self._db.execute("SAVEPOINT write")
                try:
                    if callable(write):
                        write(self._db)
                    else:
                        for sql, args in write:
                            self._db.execute(sql, args)
                except Exception:  # noqa: BLE001 — one bad write must not stop the others
                    self.failed += 1
                    self._db.execute("ROLLBACK TO write")
                    first = write[0][0] if not callable(write) and write else getattr(write, "__qualname__", "?")
                    log.exception("record write failed and was dropped: %s", first)
                self._db.execute("RELEASE write")
            self._db.execute("COMMIT")
        except Exception:  # noqa: BLE001 — the disk itself failed: the batch is lost, the thread goes on
            self.failed += len(writes)
            log.exception("record batch of %d writes could not be committed", len(writes))
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        finally:
            if self._mutex is not None:
                self._mutex.release()


def flush_all(path: str) -> None:
    """Flush every open writer on the database file ``path`` in this process."""
    with _open_lock:
        writers = list(_open.get(path, ()))
    for writer in writers:
        writer.flush()


class FlushingLock:
    """The lock around a store's read connection.  Taking it first commits every write queued
    before (in this store, and in any other store of this process on the same file), so a read
    sees every write made before it: reads stay plain ``with self._lock:`` blocks."""

    def __init__(self, writer: Writer, path: str, mutex: threading.Lock) -> None:
        self._writer = writer
        self._path = path
        self._mutex = mutex

    def __enter__(self) -> None:
        if self._path == ":memory:":
            self._writer.flush()
        else:
            flush_all(self._path)
        self._mutex.acquire()

    def __exit__(self, *exc: object) -> None:
        self._mutex.release()
