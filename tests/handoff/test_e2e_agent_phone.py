"""The ACD rings an agent's desk phone, end to end with real clients on loopback: a baresip
caller keys 0 for an agent, `voicebot serve` queues the call in `general` and rings agent bob's
phone (a SIPp UAS) itself, with the handoff in X-Voicebot-* headers.

- Answered: the phone answers after a ring, talks (a 1100 Hz tone) and hangs up; the caller
  hears it through voicebot; the record goes ivr → queued → offered → connected → wrap_up →
  ended with agent bob; the queue log has ENTERQUEUE, CONNECT, COMPLETEAGENT; the context link
  in the INVITE opens that call's record with no other credentials, and no other call.
- Busy: the phone answers 486; that is a missed offer (RINGNOANSWER, bob not ready "missed"
  with missed_offers_max 1), the caller keeps waiting on hold, then hangs up: ABANDON.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.handoff.e2e import (Baresip, explained, loud_seconds, queue_events, require, server, silence, sipp_messages, sipp_phone, state_path, stop_phone, tone, tone_seconds,
                               write_wav)
from tests.sip.harness import free_port, free_port_both
from voicebot.sip.rtp import g711_encode

pytestmark = pytest.mark.slow
AGENT_TONE_HZ = 1100.0


@pytest.fixture(scope="module")
def centre(tmp_path_factory):  # type: ignore[no-untyped-def]
    require("sipp", "baresip")
    folder = tmp_path_factory.mktemp("acd-phone")
    phone_port = free_port(socket.SOCK_DGRAM)
    settings = {
        "sip_tcp": False,
        "queues": {"general": {"ring_s": 10, "wrap_up_s": 3, "missed_offers_max": 1}},
        "agents": [{"id": "bob", "name": "Bob Chen", "password": "demo", "queues": {"general": 1},
                    "phone": f"sip:bob@127.0.0.1:{phone_port}"}],
    }
    (folder / "agent.ulaw").write_bytes(g711_encode(tone(AGENT_TONE_HZ, 5.0, 8000)))  # bob talks for 5 s
    write_wav(folder / "quiet.wav", silence(120, 8000), 8000)
    with server(folder, settings, "127.0.0.1", free_port(), free_port_both()) as srv:
        started = time.monotonic()
        srv.wait_ready()
        print(f"voicebot serve ready in {time.monotonic() - started:.1f} s")
        yield {"srv": srv, "api": srv.api, "folder": folder, "phone_port": phone_port}


def bob_ready(api) -> None:  # type: ignore[no-untyped-def]
    agent = api.post("/api/agents/bob/state", {"state": "ready"})
    assert agent["id"] == "bob" and agent["state"] == "ready", agent


def caller_asks_for_an_agent(centre, caller: Baresip) -> str:  # type: ignore[no-untyped-def]
    """The baresip caller dials the bank, waits for the bot's greeting and keys 0 (the domain's
    agent key); returns the call's id."""
    api = centre["api"]
    before = {c["id"] for c in api.calls()}
    caller.dial(f"sip:bank@127.0.0.1:{centre['srv'].sip_port}", limit_s=90)
    call_id = api.wait_for("the call's record", lambda: [c["id"] for c in api.calls() if c["id"] not in before],
                           timeout=15)[0]
    api.wait_for("the bot's greeting", lambda: [t for t in api.call(call_id)["turns"] if t["speaker"] == "bot"],
                 timeout=15)
    time.sleep(1.5)
    caller.send_digits("0")
    return call_id


def test_agent_phone_answers_and_the_caller_talks_to_bob(centre, tmp_path: Path) -> None:
    api, folder = centre["api"], centre["folder"]
    started = time.monotonic()
    bob_ready(api)
    phone = sipp_phone(folder, "uas_acd_agent.xml", centre["phone_port"])
    caller = Baresip(tmp_path / "caller", folder / "quiet.wav")
    try:
        with explained(centre["srv"], caller):
            call_id = caller_asks_for_an_agent(centre, caller)
            phone_out, _ = phone.communicate(timeout=60)
            # the phone got the handoff headers (the scenario checks them), answered, talked, hung up
            assert phone.returncode == 0, phone_out[-3000:]
            api.wait_for("the wrap-up to end", lambda: api.call(call_id)["state"] == "ended", timeout=15)
            caller.wait_output("terminated", timeout=10)  # voicebot hung up on the caller when bob did
    finally:
        stop_phone(phone)
        caller_log = caller.stop()
    rec = api.call(call_id)
    assert state_path(rec) == ["ivr", "queued", "offered", "connected", "wrap_up", "ended"], rec["events"]
    assert (rec["agent"], rec["queue_name"], rec["outcome"]) == ("bob", "general", "answered"), rec
    assert rec["transfer"]["queue"] == "general" and rec["transfer"]["reason"] == "caller_request"
    assert "[DTMF 0]" in [t["text"] for t in rec["transcript"] if t["speaker"] == "caller"]
    ended = [e["data"] for e in rec["events"] if e["kind"] == "agent_call_ended"]
    assert len(ended) == 1 and ended[0]["agent"] == "bob" and ended[0]["by"] == "agent", ended
    assert queue_events(api, call_id) == [("ENTERQUEUE", "NONE"), ("CONNECT", "bob"), ("COMPLETEAGENT", "bob")]
    assert [(e["event"], e["agent"]) for e in rec["queue"]] == queue_events(api, call_id)
    bob = next(a for a in api.get("/api/agents") if a["id"] == "bob")
    assert (bob["state"], bob["calls_taken"]) == ("ready", 1), bob  # after_wrap_up: ready

    # the INVITE bob's phone got: this call, this queue, and a signed link to this call only
    invite = sipp_messages(folder, phone).split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert re.search(rf"^X-Voicebot-Call-Id: {call_id}\r?$", invite, re.M), invite
    assert re.search(r"^X-Voicebot-Queue: general\r?$", invite, re.M), invite
    link = re.search(r"^X-Voicebot-Context: (\S+)", invite, re.M)
    assert link, invite
    url = urlsplit(link.group(1))
    assert url.path == f"/api/calls/{call_id}" and url.query.startswith("token="), link.group(1)
    status, shared = api.request("GET", link.group(1), token=False)  # no token, no cookie: only the link
    assert status == 200 and shared["id"] == call_id and shared["agent"] == "bob", (status, shared)
    assert [t["speaker"] for t in shared["transcript"]].count("bot") >= 1
    other = link.group(1).replace(call_id, uuid.uuid4().hex)
    assert api.request("GET", other, token=False)[0] == 401  # not 404: the link opens no other call
    assert api.request("GET", link.group(1)[:-3] + "AAA", token=False)[0] == 401  # a forged signature
    assert api.request("GET", f"/api/calls/{call_id}", token=False)[0] == 401  # and nothing without it

    # the caller heard bob: the 1100 Hz tone from the phone, relayed by voicebot
    samples, rate = caller.heard()
    heard_s = tone_seconds(samples, rate, AGENT_TONE_HZ)
    assert heard_s > 3.0, f"the caller heard {heard_s:.1f} s of the agent's tone"
    assert "terminated" in caller_log
    print(f"answered case: {time.monotonic() - started:.1f} s, caller heard {heard_s:.1f} s of bob")


def test_busy_agent_phone_is_a_missed_offer_and_the_caller_keeps_waiting(centre, tmp_path: Path) -> None:
    api, folder = centre["api"], centre["folder"]
    started = time.monotonic()
    bob_ready(api)
    phone = sipp_phone(folder, "uas_busy.xml", centre["phone_port"])
    caller = Baresip(tmp_path / "caller", folder / "quiet.wav")
    try:
        with explained(centre["srv"], caller):
            call_id = caller_asks_for_an_agent(centre, caller)
            phone_out, _ = phone.communicate(timeout=60)
            assert phone.returncode == 0, phone_out[-3000:]  # it got the INVITE, said 486, got the ACK
            api.wait_for("RINGNOANSWER", lambda: ("RINGNOANSWER", "bob") in queue_events(api, call_id), timeout=10)
            bob = next(a for a in api.get("/api/agents") if a["id"] == "bob")
            assert (bob["state"], bob["reason"]) == ("not_ready", "missed"), bob  # missed_offers_max: 1
            time.sleep(4)  # the caller is not dropped: still waiting, still on the line
            rec = api.call(call_id)
            assert rec["state"] == "queued" and rec["ended_at"] is None, rec
            general = next(q for q in api.get("/api/queues") if q["name"] == "general")
            assert [w["call_id"] for w in general["waiting"]] == [call_id], general
            assert "terminated" not in caller.output()
            caller.hang_up()
            api.wait_for("the abandoned call", lambda: api.call(call_id)["state"] == "abandoned", timeout=10)
    finally:
        stop_phone(phone)
        caller.stop()
    rec = api.call(call_id)
    assert state_path(rec) == ["ivr", "queued", "offered", "queued", "abandoned"], rec["events"]
    assert rec["outcome"] == "abandoned" and rec["agent"] is None, rec
    assert queue_events(api, call_id) == [("ENTERQUEUE", "NONE"), ("RINGNOANSWER", "bob"), ("ABANDON", "NONE")]
    invite = sipp_messages(folder, phone).split("INVITE sip:", 1)[1]
    assert f"X-Voicebot-Call-Id: {call_id}" in invite
    # while it waited the caller heard something (hold music and the queue's welcome), not silence
    samples, rate = caller.heard()
    assert loud_seconds(samples, rate) > 5.0
    assert not any(q["call_id"] == call_id for q in next(q for q in api.get("/api/queues")
                                                          if q["name"] == "general")["waiting"])
    print(f"busy case: {time.monotonic() - started:.1f} s")
