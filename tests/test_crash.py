"""Nothing lost on a crash.

Record writes go to one writer thread and return at once, yet reach the disk within a commit's
time: a process killed without closing its store keeps every turn it wrote.  On start the
server closes the calls a crash left open ('ended', outcome 'abnormal').  The last test does
it for real: `kill -9` of `voicebot serve` during 10 live SIPp calls whose callers speak, a
restart on the same database, and a new call taken at once.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import api_token
from tests.sip.harness import SCENARIOS, SIPP, calls, free_port, free_port_both, record
from voicebot.records.store import RecordStore

ROOT = Path(__file__).resolve().parents[1]
GREETING = "Thank you for calling Example Bank."


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_writes_return_at_once_while_the_disk_is_busy(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "busy.sqlite3")
    release = threading.Event()
    store._writer.put(lambda db: release.wait(10))  # the writer is stuck, as behind a slow disk
    started = time.perf_counter()
    call = store.start_call("sip", "+15550001111")
    seqs = [store.add_turn(call, "bot" if i % 2 else "caller", f"turn {i}", float(i)) for i in range(50)]
    store.update_turn(call, 3, timings={"first_audio_ms": 120.0})
    store.set_turn_nlu(call, 2, "check_balance", 0.9, {}, "intent:check_balance")
    store.set_state(call, "queued", queue="general")
    store.event(call, "barge_in", {"at": 1.0})
    store.close_call(call, "abandoned", "abandoned")
    elapsed = time.perf_counter() - started
    assert seqs == list(range(50))  # numbered in Python, not read back from the database
    assert elapsed < 0.5, f"{elapsed:.3f} s for 55 writes: they waited on the writer"
    release.set()
    record = store.get_call(call)  # a read sees every write made before it
    assert record is not None and len(record["turns"]) == 50
    assert record["turns"][3]["timings"] == {"first_audio_ms": 120.0}
    assert record["turns"][2]["intent"] == "check_balance"
    assert (record["state"], record["outcome"]) == ("abandoned", "abandoned")
    assert store.add_turn(call, "agent", "late transcript", 60.0, agent="alice") == 50  # counted on from the database
    store.close()


def test_a_second_store_on_the_file_reads_what_the_first_wrote(tmp_path: Path) -> None:
    first = RecordStore(tmp_path / "two.sqlite3")
    call = first.start_call("sip")
    first.add_turn(call, "caller", "hello", 1.0)
    second = RecordStore(tmp_path / "two.sqlite3")
    assert [t["text"] for t in second.get_call(call)["turns"]] == ["hello"]
    assert second.add_turn(call, "bot", "hi", 2.0) == 1  # a call it did not start: seq from the database
    first.close()
    second.close()


def test_a_failing_write_is_dropped_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = RecordStore(tmp_path / "fail.sqlite3")
    call = store.start_call("sip", call_id="c1")
    store.start_call("sip", call_id="c1")  # the same id again: its insert fails in the writer
    store.add_turn(call, "caller", "still here", 1.0)
    record = store.get_call(call)
    assert [t["text"] for t in record["turns"]] == ["still here"]
    assert store._writer.failed == 1 and "record write failed" in caplog.text
    store.close()


CHILD = textwrap.dedent("""
    import sys, time
    from voicebot.records.store import RecordStore
    store = RecordStore(sys.argv[1])
    call = store.start_call("sip", "+15550001111", call_id="crash")
    now = time.time()
    for i in range(3):
        store.add_turn(call, "bot" if i % 2 else "caller", f"turn {i}", now + i, now + i + 0.5)
    store.set_turn_nlu(call, 0, "check_balance", 0.9, {}, "intent:check_balance")
    print("written", flush=True)
    time.sleep(60)  # killed here, store never closed
""")


def test_a_killed_process_keeps_every_turn_it_wrote(tmp_path: Path) -> None:
    db = tmp_path / "killed.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        written = time.monotonic()
        reader = sqlite3.connect(db)
        while True:  # how long until the writes are on disk, seen from another process
            try:
                done = reader.execute("SELECT COUNT(*) FROM turns WHERE intent IS NOT NULL").fetchone()[0] == 1
            except sqlite3.OperationalError:  # the tables are still being made
                done = False
            if done or time.monotonic() - written > 5:
                break
            time.sleep(0.005)
        on_disk_s = time.monotonic() - written
        reader.close()
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    # the target is one commit (~50 ms); the bound leaves room for a loaded 2-core machine
    assert on_disk_s < 1.0, f"the writes reached the disk {on_disk_s:.3f} s after they returned"
    store = RecordStore(db)
    record = store.get_call("crash")
    assert [t["text"] for t in record["turns"]] == ["turn 0", "turn 1", "turn 2"]
    assert record["turns"][0]["intent"] == "check_balance"
    assert record["ended_at"] is None  # still open: the restarted server closes it
    assert store.close_calls_in_flight() == ["crash"]
    record = store.get_call("crash")
    assert (record["state"], record["outcome"]) == ("ended", "abnormal")
    assert record["ended_at"] == record["turns"][-1]["ended_at"]  # the last thing recorded of it
    assert record["events"][-1]["data"]["reason"] == "the server stopped during the call"
    store.close()


def test_calls_left_in_flight_are_closed_abnormal() -> None:
    clock = Clock(100.0)
    store = RecordStore(":memory:", clock=clock)
    ids = {}
    for state in ("ivr", "queued", "offered", "connected", "wrap_up", "ended", "abandoned", "transferred_out"):
        call = ids[state] = store.start_call("sip", call_id=state)
        store.add_turn(call, "bot", "hello", 101.0, 102.0)
        if state in ("connected", "offered"):
            store.set_state(call, state, agent="alice")
            store.end_call(call, "transferred")  # the bot's part was over before the crash
        elif state == "wrap_up":
            clock.now = 103.0
            store.set_state(call, "connected", agent="alice")
            store.close_call(call, "wrap_up", "answered")
        elif state in ("ended", "abandoned"):
            store.close_call(call, state, "caller_hung_up")
        elif state == "transferred_out":  # a bridged transfer out, live when the server died
            store.set_state(call, state)
        else:
            store.set_state(call, state)
    clock.now = 500.0
    closed = store.close_calls_in_flight()
    assert sorted(closed) == ["connected", "ivr", "offered", "queued", "transferred_out", "wrap_up"]
    summary = {state: (r["state"], r["outcome"], r["ended_at"]) for state in ids if (r := store.get_call(state))}
    assert summary == {
        "ivr": ("ended", "abnormal", 102.0), "queued": ("ended", "abnormal", 102.0),
        "offered": ("ended", "abnormal", 102.0), "connected": ("ended", "abnormal", 102.0),
        "wrap_up": ("ended", "answered", 103.0),  # the caller had gone: only the paperwork died
        "ended": ("ended", "caller_hung_up", 103.0), "abandoned": ("abandoned", "caller_hung_up", 103.0),
        "transferred_out": ("transferred_out", "abnormal", 103.0)}
    why = store.get_call("connected")["events"][-1]
    assert why == {"at": 500.0, "kind": "state", "data": {"state": "ended", "outcome": "abnormal", "was": "connected",
                                                          "reason": "the server stopped during the call"}}
    assert store.close_calls_in_flight() == []  # once only


# ---------------------------------------------------------------------- kill -9 with real callers

def caller_ulaw(folder: Path, seconds: int = 120) -> None:
    """``caller.ulaw`` for sip/scenarios/uac_speak.xml: "What's my balance?" in Piper's voice
    through a phone line, then ``seconds`` of silence."""
    from tests.speech import phone_line, piper
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine
    from voicebot.sip.rtp import g711_encode

    model = resolve("tts")
    pcm, _ = phone_line(*piper(PiperEngine(str(model), str(model) + ".json"), "What's my balance?"))
    # then silence, sent as RTP: a caller still on the line (no RTP for 30 s is a hang-up)
    (folder / "caller.ulaw").write_bytes(g711_encode(pcm + b"\0" * 8000 * 2 * seconds))


def _serve(tmp: Path, http: int, sip: int, log: Path, meanwhile: Callable[[], None] | None = None,
           ) -> subprocess.Popen[bytes]:
    """`voicebot serve` on the given ports and tmp's database, up and answering /healthz
    (``meanwhile`` is done while it starts)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--port", str(http),
                                 "--sip-port", str(sip), "--db", str(tmp / "calls.sqlite3")], stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "HF_HUB_OFFLINE": "1", "VOICEBOT_SIP_TCP": "false", **api_token.ENV})
    if meanwhile is not None:
        try:
            meanwhile()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=2)
            return proc
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)


def _turns(call: dict) -> list[tuple[int, str, str]]:
    return [(t["seq"], t["speaker"], t["text"]) for t in call["turns"]]


@pytest.mark.slow
def test_kill_9_during_ten_live_calls_loses_no_finished_turn(tmp_path: Path) -> None:
    assert SIPP is not None, "sipp (Debian sip-tester) is not installed; make test installs it"
    http, sip, log = free_port(), free_port_both(), tmp_path / "server.log"
    base = f"http://127.0.0.1:{http}"
    server = _serve(tmp_path, http, sip, log, meanwhile=lambda: caller_ulaw(tmp_path))
    # 10 callers, 5 a second: each hears the greeting, asks for its balance after 3 s, and stays on
    callers = subprocess.Popen([SIPP, "-sf", str(SCENARIOS / "uac_speak.xml"), "-i", "127.0.0.1",
                                "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
                                "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "10", "-l", "10", "-r", "5",
                                "-d", "120000", "-timeout", "150s", "-nostdin", "-trace_err", "-trace_counts",
                                "-fd", "1", f"127.0.0.1:{sip}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        dialled = time.monotonic()
        while True:  # until every caller has asked and been answered (or time is up: kill anyway)
            before = {c["id"]: record(base, c["id"]) for c in calls(base)}
            answered = [c for c in before.values() if "caller" in (s := [s for _, s, _ in _turns(c)])
                        and "bot" in s[s.index("caller"):]]
            if len(answered) == 10 or time.monotonic() - dialled > 60:
                break
            time.sleep(0.5)
        print(f"killed {time.monotonic() - dialled:.1f} s after dialling, {len(answered)} of {len(before)} calls"
              f" answered, {sum(len(c['turns']) for c in before.values())} turns recorded")
        assert len(before) == 10, f"{len(before)} calls were answered"
        server.send_signal(signal.SIGKILL)  # kill -9, in the middle of 10 live calls
        server.wait(10)
        counts = list(csv.DictReader(next(tmp_path.glob("uac_speak_*_counts.csv")).open(), delimiter=";"))[-1]
    finally:
        callers.kill()
        callers.wait()
        if server.poll() is None:
            server.kill()
    assert int(counts["4_200_Recv"]) == 10 and int(counts["3_503_Recv"]) == 0  # the callers saw 10 answered calls
    assert all(c["ended_at"] is None for c in before.values()), [  # they were live
        (c["state"], c["outcome"], _turns(c)) for c in before.values() if c["ended_at"] is not None]

    server = _serve(tmp_path, http, sip, log)  # the same database, the same ports
    try:
        restarted = time.monotonic()
        new_call = subprocess.run([SIPP, "-sf", str(SCENARIOS / "uac_listen.xml"), "-i", "127.0.0.1",
                                   "-p", str(free_port(socket.SOCK_DGRAM)), "-mi", "127.0.0.1",
                                   "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "1", "-timeout", "30s", "-nostdin",
                                   "-trace_err", f"127.0.0.1:{sip}"], capture_output=True, text=True, timeout=60,
                                  cwd=tmp_path)
        assert new_call.returncode == 0, new_call.stdout[-3000:]
        assert time.monotonic() - restarted < 15  # answered at once: a 6 s call, nothing to wait for first
        after = {c["id"]: record(base, c["id"]) for c in calls(base)}
    finally:
        server.terminate()
        server.wait(30)
    assert "closed 10 call(s) left in flight" in log.read_text()
    for call_id, was in before.items():
        now = after[call_id]
        assert (now["state"], now["outcome"]) == ("ended", "abnormal"), call_id
        assert now["ended_at"] is not None and now["ended_at"] >= max(t["started_at"] for t in was["turns"])
        assert _turns(now)[:len(_turns(was))] == _turns(was), "a turn recorded before the kill is missing"
        assert _turns(now)[0][1:] == ("bot", GREETING)
        assert [e["data"].get("reason") for e in now["events"] if e["kind"] == "state"][-1] == (
            "the server stopped during the call")
    asked = [c for c in before.values() if any(s == "caller" for _, s, _ in _turns(c))]
    assert len(asked) >= 8, f"only {len(asked)} of 10 callers' questions were transcribed before the kill"
    (new_id,) = set(after) - set(before)
    assert after[new_id]["outcome"] != "abnormal" and _turns(after[new_id])[0][1:] == ("bot", GREETING)
