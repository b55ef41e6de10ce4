"""Asterisk-shaped queue_log lines and the tally of callers in and out of each queue."""

from __future__ import annotations

from voicebot.handoff import queue_log as ql
from voicebot.handoff.events import LogEvent
from voicebot.records.store import RecordStore


def test_event_names_are_asterisks() -> None:
    names = [ql.ENTERQUEUE, ql.RINGNOANSWER, ql.RINGCANCELED, ql.CONNECT, ql.COMPLETECALLER, ql.COMPLETEAGENT,
             ql.ABANDON, ql.EXITWITHTIMEOUT, ql.EXITEMPTY, ql.EXITWITHKEY, ql.TRANSFER, ql.AGENTLOGIN, ql.AGENTLOGOFF,
             ql.PAUSE, ql.UNPAUSE, ql.FULL, ql.JOINEMPTY]
    assert names == ["ENTERQUEUE", "RINGNOANSWER", "RINGCANCELED", "CONNECT", "COMPLETECALLER", "COMPLETEAGENT",
                     "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY", "TRANSFER", "AGENTLOGIN", "AGENTLOGOFF",
                     "PAUSE", "UNPAUSE", "FULL", "JOINEMPTY"]
    # voicebot's own (Asterisk has none): a supervisor's steering, opening hours, callbacks, resume
    ours = [ql.MOVED, ql.PRIORITY, ql.JOINCLOSED, ql.EXITCLOSED, ql.CALLBACK, ql.CALLBACKRETRY, ql.CALLBACKFAILED,
            ql.RESUMED]
    assert ours == ["MOVED", "PRIORITY", "JOINCLOSED", "EXITCLOSED", "CALLBACK", "CALLBACKRETRY", "CALLBACKFAILED",
                    "RESUMED"]
    assert ql.TERMINAL == {"COMPLETECALLER", "COMPLETEAGENT", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY",
                           "TRANSFER", "FULL", "JOINEMPTY", "MOVED", "JOINCLOSED", "EXITCLOSED", "CALLBACKFAILED"}
    assert not ql.TERMINAL & {ql.ENTERQUEUE, ql.CONNECT, ql.RINGNOANSWER, ql.RINGCANCELED, ql.PRIORITY, ql.CALLBACK,
                              ql.CALLBACKRETRY, ql.RESUMED}
    assert ql.VOICEMAIL == "VOICEMAIL" and ql.VOICEMAIL not in ql.CALLER_EVENTS  # after a stay, not part of one
    assert ql.CALLER_EVENTS | ql.AGENT_EVENTS == set(names) | set(ours)


def test_a_line_reads_as_asterisk_writes_it() -> None:
    connect = LogEvent(1732980000.75, "c1", "general", "alice", ql.CONNECT, ("12", "leg-7", "3"))
    assert ql.asterisk_line(connect) == "1732980000|c1|general|alice|CONNECT|12|leg-7|3"
    login = {"time": 1732980001.0, "call_id": "NONE", "queue": None, "agent": "alice", "event": ql.AGENTLOGIN,
             "data": []}
    assert ql.asterisk_line(login) == "1732980001|NONE|NONE|alice|AGENTLOGIN|"
    enter = {"time": 5, "call_id": "c2", "queue": "cards", "agent": "", "event": ql.ENTERQUEUE,
             "data": ["", "+15550001111", "1"]}
    assert ql.asterisk_line(enter) == "5|c2|cards|NONE|ENTERQUEUE||+15550001111|1"


def test_a_field_cannot_break_the_line() -> None:
    row = {"time": 1.0, "call_id": "c|1", "queue": "q\r\n2", "agent": "NONE", "event": ql.PAUSE,
           "data": ["lunch|break\nnow", None]}
    line = ql.asterisk_line(row)
    assert "\n" not in line and "\r" not in line
    assert line.split("|") == ["1", "c 1", "q  2", "NONE", "PAUSE", "lunch break now", ""]


def test_export_from_the_store_is_a_queue_log_file() -> None:
    store = RecordStore(":memory:")
    for ev in (LogEvent(10.0, "NONE", "NONE", "alice", ql.AGENTLOGIN),
               LogEvent(20.2, "c1", "general", "NONE", ql.ENTERQUEUE, ("", "+15550001111", "1")),
               LogEvent(25.9, "c1", "general", "alice", ql.CONNECT, ("5", "leg-1", "2")),
               LogEvent(90.0, "c1", "general", "alice", ql.COMPLETEAGENT, ("5", "64", "1"))):
        store.log_queue_event(ev)
    text = "".join(ql.export_asterisk(store.queue_log()))
    assert text == ("10|NONE|NONE|alice|AGENTLOGIN|\n"
                    "20|c1|general|NONE|ENTERQUEUE||+15550001111|1\n"
                    "25|c1|general|alice|CONNECT|5|leg-1|2\n"
                    "90|c1|general|alice|COMPLETEAGENT|5|64|1\n")
    assert list(ql.export_asterisk([])) == []


def _ev(t: float, call: str, queue: str, event: str, agent: str = "NONE", *data: str) -> LogEvent:
    return LogEvent(t, call, queue, agent, event, data)


def test_a_day_of_calls_balances() -> None:
    rows = [
        _ev(0, "NONE", "NONE", ql.AGENTLOGIN, "alice"),
        _ev(1, "a", "general", ql.ENTERQUEUE), _ev(2, "a", "general", ql.RINGNOANSWER, "bob", "15000"),
        _ev(3, "a", "general", ql.CONNECT, "alice", "2", "leg", "1"),
        _ev(9, "a", "general", ql.COMPLETECALLER, "alice"),
        _ev(1, "b", "general", ql.ENTERQUEUE), _ev(4, "b", "general", ql.ABANDON, "NONE", "1", "2", "3"),
        _ev(1, "c", "general", ql.ENTERQUEUE), _ev(30, "c", "general", ql.EXITWITHTIMEOUT),
        _ev(1, "d", "general", ql.ENTERQUEUE), _ev(5, "d", "general", ql.EXITWITHKEY, "NONE", "1"),
        _ev(1, "e", "cards", ql.JOINEMPTY), _ev(1, "f", "cards", ql.FULL),
        # g is answered in general, then its agent sends it on to cards, where it is still waiting
        _ev(1, "g", "general", ql.ENTERQUEUE), _ev(2, "g", "general", ql.CONNECT, "alice"),
        _ev(8, "g", "general", ql.TRANSFER, "alice", "cards", "default"), _ev(8, "g", "cards", ql.ENTERQUEUE),
        _ev(1, "h", "cards", ql.ENTERQUEUE), _ev(3, "h", "cards", ql.CONNECT, "carol"),  # still talking
        _ev(4, "NONE", "cards", ql.PAUSE, "carol", "lunch"),
    ]
    balance = ql.check_balance(rows)
    assert balance == {
        "general": {"entered": 5, "connected": 2, "abandoned": 1, "exited": 2, "refused": 0, "completed": 2,
                    "waiting": 0, "on_call": 0, "unmatched": 0},
        "cards": {"entered": 2, "connected": 1, "abandoned": 0, "exited": 0, "refused": 2, "completed": 0,
                  "waiting": 1, "on_call": 1, "unmatched": 0},
    }
    for q in balance.values():
        assert q["entered"] == q["connected"] + q["abandoned"] + q["exited"] + q["waiting"]
        assert q["connected"] == q["completed"] + q["on_call"]


def test_lines_that_fit_no_visit_are_counted() -> None:
    rows = [
        _ev(1, "x", "general", ql.CONNECT, "alice"),  # never entered
        _ev(2, "y", "general", ql.ENTERQUEUE), _ev(3, "y", "general", ql.ENTERQUEUE),  # entered twice
        _ev(4, "y", "general", ql.COMPLETECALLER),  # completed without a CONNECT
        _ev(5, "y", "general", ql.ABANDON), _ev(6, "y", "general", ql.ABANDON),  # ended twice
    ]
    assert ql.check_balance(rows)["general"] == {"entered": 1, "connected": 0, "abandoned": 1, "exited": 0,
                                                 "refused": 0, "completed": 0, "waiting": 0, "on_call": 0,
                                                 "unmatched": 4}
    assert ql.check_balance([]) == {}
