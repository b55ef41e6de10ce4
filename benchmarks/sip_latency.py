"""Turn latency on the wire under concurrent SIP callers, per stage, with intent accuracy.

Method.  A real `voicebot serve` runs on 127.0.0.1 (harness.Server: its own settings file, with
``--set key=value`` overrides on top, so configurations can be compared).  Each caller is the
small UAC of sip_caller.py: INVITE with PCMU, ACK, RTP both ways every 20 ms, BYE.  Callers
speak recorded bank requests (UTTERANCES: Piper's voice through an 8 kHz G.711 line, made once
at start by the tests' speech helpers), each with the intent the bank domain should record for
it; every request is one the bot answers in one turn (it carries its account or card digits),
and only the lost-card one is followed by a question (the confirmation; the next request
switches away from it).  A caller waits for the greeting to end (bot audio, then --quiet-s of
silence), waits a random 0..--stagger-s, speaks, waits for the bot's reply to end, and so on for
--turns turns; callers also dial in at random times within --start-stagger-s, so no two speak
in lockstep.  Levels of 1, 2, 4, 8... callers talking at once run one after the other, and the
sweep stops after the first level whose p90 passes --max-p90-s.

Wire latency of a turn, taken at the caller with time.monotonic(): from the moment the caller's
last voiced RTP packet of the utterance left (the last 20 ms packet above -40 dBFS) to the
arrival of the bot's first voiced RTP packet after it.  A turn where the bot spoke while the
caller was still talking is counted apart ("overlap") and kept out of the percentiles; a turn
with no bot audio within --turn-timeout-s counts as "no reply".

Stages.  The server records per caller turn, all from its VAD's end of speech (``speech_end``):
``turn_end_ms`` (the turn was ended: silence, smart-turn or a confident early request; when a
server does not record it, the end_of_turn_s setting, capped by the transcript time, stands in),
``transcript_ms``, ``decision_ms`` and ``first_audio_ms`` (first bot audio handed to the RTP
edge).  A wire turn is matched to its record by time (the record's speech_end lies between the
caller's first packet and the bot's reply; server and callers share this host's clock), and its
stages are the gaps between successive milestones, each clamped to be no earlier than the one
before, so they are never negative and overlapped work (a transcript guessed during the pause)
counts once:

    end of turn  = turn_end
    ASR          = max(turn_end, transcript) - turn_end         (ASR still running after the turn ended)
    dialog/NLU   = max(.., decision) - max(turn_end, transcript)
    TTS first    = max(.., first_audio) - max(.., decision)
    transport    = wire total - max(.., first_audio)            (caller → server RTP, jitter buffer,
                                                                 VAD's view of the speech's end,
                                                                 pacing and RTP back to the caller)

The first four are the server's clock from its speech_end; the last is what the wire adds around
it, so the five add up to the wire total turn by turn (same origin: the caller's last voiced
packet).  ``inbound_ms`` (server speech_end minus the caller's last voiced packet) and
``outbound_ms`` split transport in two; inbound can be negative when the VAD judges the speech
over before the energy threshold does.  Percentiles of stages do not add up; their means do,
which is what the plot stacks.

Per level: wire p50/p90/p99, per-stage p50s and means, intent accuracy (each matched turn's
recorded intent against the utterance's expected intent; an unmatched turn counts as wrong),
calls per core, the server's CPU (cores, from /proc/<pid>/stat over the level) and CPU per call,
its RSS idle after a warm-up call (every model loaded and used once) and RSS growth per talking
call (peak and median RSS during the level minus idle, divided by the callers).  A
--memory-calls step (default 20) then holds that many talking callers for --memory-s seconds
only to measure RSS growth per call; its latency is reported with no stop rule.

JSON (machine, load average, packages, settings, per level, per turn) to --out, a PNG beside it.

    python benchmarks/sip_latency.py [--levels 1,2,4,8,16] [--turns 4] [--memory-calls 20]
                                     [--set end_of_turn_s=0.25 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from harness import (ROOT, Sampler, Server, ServerDidNotStart, cpu_seconds, machine, package_versions,  # noqa: E402
                     parse_overrides, phone_speech, rss_mib)
from sip_caller import SipCall, Utterance  # noqa: E402

from voicebot.config import Settings  # noqa: E402
from voicebot.sip.rtp import g711_encode  # noqa: E402

# (what the caller says, the intent the bank domain should record for it).  Digits ride along so
# that no request needs a follow-up question; all name account 1234, because the dialog keeps
# the first account digits it heard for the rest of the call.  The order matters: the lost-card
# request (answered with a confirmation question) is followed by a strong other request.
UTTERANCES: list[tuple[str, str]] = [
    ("What are your opening hours?", "opening_hours"),
    ("What's my balance on account one two three four?", "check_balance"),
    ("Read me my recent transactions for account one two three four.", "recent_transactions"),
    ("When does the branch open on Saturday?", "opening_hours"),
    ("How much money do I have in account one two three four?", "check_balance"),
    ("What did I spend recently on account one two three four?", "recent_transactions"),
    ("Block my debit card ending four three two one.", "lost_card"),
    ("Are you open on Sundays?", "opening_hours"),
    ("Did my deposit go through on account one two three four?", "recent_transactions"),
    ("What time do you close today?", "opening_hours"),
]
STAGES = ("end_of_turn", "asr", "dialog", "tts_first_audio", "transport")
STAGES_METHOD = ("wire_ms: caller's last voiced RTP packet sent -> bot's first voiced RTP packet received (caller's"
                 " monotonic clock). Server milestones from its VAD speech_end: m1 = turn_end_ms (else"
                 " min(end_of_turn_s, transcript_ms)), m2 = max(m1, transcript_ms), m3 = max(m2, decision_ms),"
                 " m4 = max(m3, first_audio_ms). end_of_turn = m1, asr = m2-m1, dialog = m3-m2, tts_first_audio ="
                 " m4-m3, transport = wire_ms-m4: they add up to wire_ms. inbound_ms = server speech_end - caller's"
                 " last voiced packet (shared host clock); outbound = wire_ms - first_audio_ms - inbound_ms.")
DROP_FROM_RECORD = ("agents", "users", "api_tokens", "queues", "secret_key", "sip_credentials", "sip_trunks",
                    "sip_transfer_targets", "dispositions", "not_ready_reasons", "sip_outbound")


@dataclass
class Turn:
    """One utterance as the caller lived it (monotonic seconds), and what the record says."""

    level: str
    caller: int
    call_id: str
    n: int
    utterance: int
    first_sent: float
    last_voiced_sent: float
    first_reply: float | None = None
    reply_end: float | None = None
    overlap: bool = False  # the bot spoke while the caller was still talking
    wire_ms: float | None = None
    # from the call record
    matched: bool = False
    split: int = 0  # record turns within this utterance (above 1: the VAD cut it)
    heard: str | None = None
    intent: str | None = None
    confidence: float | None = None
    rule: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    inbound_ms: float | None = None
    outbound_ms: float | None = None
    server: dict[str, float] = field(default_factory=dict)


@dataclass
class Caller:
    """A caller's call: the turns so far (kept as they happen, so a level cut short keeps them)."""

    index: int
    call: SipCall
    status: int | None = None
    greeted: bool = False
    bot_hung_up: bool = False
    turns: list[Turn] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 1) if values else None


async def wait_reply(call: SipCall, since: float, timeout: float) -> float | None:
    """The bot's first voiced packet after ``since``, waiting at most ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        at = call.rtp.first_voiced_after(since)
        if at is not None or call.sip.bye_received_at is not None or time.monotonic() > deadline:
            return at
        await asyncio.sleep(0.02)


async def run_caller(caller: Caller, level: str, utterances: list[Utterance], offset: int, turns: int | None,
                     until: float | None, args: argparse.Namespace, rng: random.Random, bar: tqdm,
                     hear_out: bool = True) -> None:
    """Dial in at a random moment, hear the greeting out, then speak ``turns`` utterances (or
    until ``until``), each after the bot's previous reply has ended and a random pause.
    ``hear_out`` false: hang up once the last reply starts (the warm-up needs no more)."""
    await asyncio.sleep(rng.uniform(0, args.start_stagger_s))
    call = await caller.call.open()
    try:
        response = await call.invite(timeout=10)
        caller.status = response.status
        if response.status != 200:
            return
        call.ack()
        call.start_media()  # RTP from the start, silence until the caller speaks
        caller.greeted = await call.wait_quiet(args.quiet_s, args.greeting_timeout_s)
        n = 0
        while (turns is None or n < turns) and (until is None or time.monotonic() < until):
            if call.sip.bye_received_at is not None:
                caller.bot_hung_up = True
                break
            await asyncio.sleep(rng.uniform(0, args.stagger_s))
            k = (offset + n) % len(utterances)
            first_sent, last_voiced, _ = await call.say(utterances[k])
            assert last_voiced is not None
            turn = Turn(level, caller.index, call.call_id, n, k, first_sent, last_voiced)
            caller.turns.append(turn)
            early = call.rtp.first_voiced_after(first_sent)
            turn.overlap = early is not None and early <= last_voiced
            turn.first_reply = await wait_reply(call, last_voiced, args.turn_timeout_s)
            if turn.first_reply is not None:
                turn.wire_ms = round((turn.first_reply - last_voiced) * 1000, 1)
                last = turns is not None and n + 1 >= turns
                if (hear_out or not last) and await call.wait_quiet(args.quiet_s, args.reply_timeout_s, since=turn.first_reply - 1e-6):
                    turn.reply_end = call.rtp.last_voiced
            n += 1
            bar.update(1)
    finally:
        caller.bot_hung_up = caller.bot_hung_up or call.sip.bye_received_at is not None
        if caller.status == 200 and not caller.bot_hung_up:
            call.bye()
        await call.close(linger=0.3)


async def run_level(server: Server, level: str, callers: int, utterances: list[Utterance], turns: int | None,
                    hold_s: float | None, args: argparse.Namespace, seed: int, hear_out: bool) -> list[Caller]:
    rng = random.Random(seed)
    people = [Caller(i, SipCall(server.sip_address)) for i in range(callers)]
    until = time.monotonic() + hold_s if hold_s is not None else None
    total = callers * turns if turns is not None else None
    with tqdm(total=total, desc=f"{level}: {callers} caller{'s' * (callers > 1)}", unit="turn", leave=True,
              dynamic_ncols=True) as bar:
        tasks = [asyncio.create_task(run_caller(p, level, utterances, (3 * p.index) % len(utterances), turns, until,
                                                args, random.Random(rng.random()), bar, hear_out)) for p in people]
        done, pending = await asyncio.wait(tasks, timeout=args.level_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                tqdm.write(f"a caller failed: {task.exception()!r}")
        if pending:
            tqdm.write(f"{level}: {len(pending)} caller(s) still talking after {args.level_timeout_s:g} s, hung up")
    return people


def read_records(db: Path, call_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Caller turns of the given SIP calls, by SIP Call-ID, in order."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        calls = {json.loads(r["data"]).get("sip_call_id"): r["call_id"]
                 for r in con.execute("SELECT call_id, data FROM events WHERE kind = 'sip_call'")}
        out: dict[str, list[dict[str, Any]]] = {}
        for sip_id in call_ids:
            if sip_id not in calls:
                continue
            rows = con.execute("SELECT seq, text, started_at, intent, confidence, rule, timings FROM turns"
                               " WHERE call_id = ? AND speaker = 'caller' ORDER BY seq", (calls[sip_id],)).fetchall()
            out[sip_id] = [{**dict(r), "timings": json.loads(r["timings"] or "{}")} for r in rows]
        return out
    finally:
        con.close()


def attach_records(turns: list[Turn], records: dict[str, list[dict[str, Any]]], wall_offset: float,
                   end_of_turn_ms: float) -> None:
    """Match each wire turn to the record turn the bot answered, and split its latency into stages.
    ``wall_offset``: time.time() - time.monotonic() here; the server's records keep wall times."""
    for turn in turns:
        rows = records.get(turn.call_id, [])
        upper = turn.first_reply if turn.first_reply is not None else turn.last_voiced_sent + 3.0
        inside = [r for r in rows if turn.first_sent <= r["started_at"] - wall_offset <= upper
                  and not r.get("_used")]
        if not inside:
            continue
        for r in inside:
            r["_used"] = True
        row = inside[-1]
        turn.matched, turn.split = True, len(inside)
        turn.heard, turn.intent, turn.confidence, turn.rule = row["text"], row["intent"], row["confidence"], row["rule"]
        t = row["timings"]
        turn.server = {k: v for k, v in t.items() if isinstance(v, (int, float))}
        speech_end = row["started_at"] - wall_offset
        turn.inbound_ms = round((speech_end - turn.last_voiced_sent) * 1000, 1)
        if turn.wire_ms is None or turn.overlap or "first_audio_ms" not in t or "transcript_ms" not in t:
            continue
        transcript = t["transcript_ms"]
        m1 = t.get("turn_end_ms", min(end_of_turn_ms, transcript))
        m2 = max(m1, transcript)
        m3 = max(m2, t.get("decision_ms", m2))
        m4 = max(m3, t["first_audio_ms"])
        turn.stages = {"end_of_turn": round(m1, 1), "asr": round(m2 - m1, 1), "dialog": round(m3 - m2, 1),
                       "tts_first_audio": round(m4 - m3, 1), "transport": round(turn.wire_ms - m4, 1)}
        turn.outbound_ms = round(turn.wire_ms - t["first_audio_ms"] - turn.inbound_ms, 1)


def level_stats(people: list[Caller], utterances: list[Utterance], samples: list[dict[str, float]],
                idle_rss: float, cpu_s: float, wall_s: float, client_cpu_s: float, threshold_ms: float | None,
                load: tuple[float, float, float]) -> dict[str, Any]:
    callers = len(people)
    turns = [t for p in people for t in p.turns]
    measured = [t for t in turns if t.wire_ms is not None and not t.overlap]
    wire = [t.wire_ms for t in measured]  # type: ignore[misc]
    staged = [t for t in measured if t.stages]
    correct = sum(1 for t in turns if t.matched and t.intent == utterances[t.utterance].intent)
    rss = [s["rss_mib"] for s in samples]
    cores = cpu_s / wall_s if wall_s > 0 else 0.0
    p90 = percentile(wire, 90)
    row: dict[str, Any] = {
        "callers": callers, "calls_per_core": round(callers / (os.cpu_count() or 1), 2),
        "answered": sum(1 for p in people if p.status == 200), "refused": sum(1 for p in people if p.status not in (200, None)),
        "no_answer": sum(1 for p in people if p.status is None),
        "greeting_heard_out": sum(1 for p in people if p.greeted), "bot_hung_up": sum(1 for p in people if p.bot_hung_up),
        "turns_spoken": len(turns), "turns_measured": len(wire),
        "no_reply": sum(1 for t in turns if t.first_reply is None), "overlap": sum(1 for t in turns if t.overlap),
        "matched_to_record": sum(1 for t in turns if t.matched), "vad_split": sum(1 for t in turns if t.split > 1),
        "wire_ms_p50": percentile(wire, 50), "wire_ms_p90": p90, "wire_ms_p99": percentile(wire, 99),
        "wire_ms_max": round(max(wire), 1) if wire else None,
        "stage_ms_p50": {s: median([t.stages[s] for t in staged]) for s in STAGES},
        "stage_ms_mean": {s: mean([t.stages[s] for t in staged]) for s in STAGES},
        "wire_ms_mean_staged": mean([t.wire_ms for t in staged]),  # type: ignore[misc]
        "inbound_ms_p50": median([t.inbound_ms for t in staged if t.inbound_ms is not None]),
        "outbound_ms_p50": median([t.outbound_ms for t in staged if t.outbound_ms is not None]),
        "asr_guessed": sum(1 for t in staged if t.server.get("asr_guessed")),
        "prompt_cached": sum(1 for t in staged if t.server.get("prompt_cached")),
        "intent_accuracy": round(correct / len(turns), 3) if turns else None, "intent_correct": correct,
        "intent_mismatches": [{"said": utterances[t.utterance].text, "expected": utterances[t.utterance].intent,
                               "heard": t.heard, "intent": t.intent, "rule": t.rule} for t in turns
                              if not (t.matched and t.intent == utterances[t.utterance].intent)],
        "server_cpu_cores": round(cores, 2), "server_cpu_per_call": round(cores / callers, 3),
        "client_cpu_cores": round(client_cpu_s / wall_s, 2) if wall_s > 0 else None,
        "client_send_lag_ms_max": round(max((p.call.max_send_lag_ms for p in people), default=0.0), 1),
        "rss_mib_peak": max(rss) if rss else None, "rss_mib_median": median(rss),
        "rss_growth_mib_per_call_peak": round((max(rss) - idle_rss) / callers, 1) if rss else None,
        "rss_growth_mib_per_call_median": round((statistics.median(rss) - idle_rss) / callers, 1) if rss else None,
        "wall_s": round(wall_s, 1), "load_average_before": [round(x, 2) for x in load],
    }
    if threshold_ms is not None:
        row["p90_within_limit"] = p90 is not None and p90 <= threshold_ms
    return row


def measure_level(server: Server, sampler: Sampler, label: str, callers: int, utterances: list[Utterance],
                  turns: int | None, hold_s: float | None, args: argparse.Namespace, idle_rss: float,
                  threshold_ms: float | None, seed: int) -> tuple[dict[str, Any], list[Turn]]:
    load = os.getloadavg()
    t_s, cpu0, wall0 = sampler.now_s(), cpu_seconds(server.pid), time.monotonic()
    client0 = client_cpu()
    people = asyncio.run(run_level(server, f"{label}:{callers}", callers, utterances, turns, hold_s, args, seed,
                                   hear_out=label != "warm-up"))
    wall, cpu, client = time.monotonic() - wall0, cpu_seconds(server.pid) - cpu0, client_cpu() - client0
    samples = sampler.since(t_s)
    time.sleep(1.0)  # the last hang-ups reach the records
    turns_ = [t for p in people for t in p.turns]
    wall_offset = time.time() - time.monotonic()
    attach_records(turns_, read_records(server.db, {p.call.call_id for p in people}), wall_offset,
                   args.end_of_turn_ms)
    row = level_stats(people, utterances, samples, idle_rss, cpu, wall, client, threshold_ms, load)
    row["label"] = label
    return row, turns_


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_utterances() -> list[Utterance]:
    pcms = phone_speech([text for text, _ in UTTERANCES])
    return [Utterance.from_ulaw(text, intent, g711_encode(pcm) + g711_encode(bytes(1600)))  # + 0.1 s of silence
            for (text, intent), pcm in zip(UTTERANCES, pcms)]


def table(rows: list[dict[str, Any]]) -> str:
    head = ["level", "callers", "calls/core", "turns", "p50 ms", "p90 ms", "p99 ms", "EOT", "ASR", "dialog", "TTS",
            "transport", "intent", "CPU cores", "CPU/call", "RSS+/call peak", "RSS+/call med"]
    lines = [head]
    for r in rows:
        st = r["stage_ms_p50"]
        lines.append([r["label"], r["callers"], r["calls_per_core"], f"{r['turns_measured']}/{r['turns_spoken']}",
                      r["wire_ms_p50"], r["wire_ms_p90"], r["wire_ms_p99"], st["end_of_turn"], st["asr"], st["dialog"],
                      st["tts_first_audio"], st["transport"],
                      f"{100 * r['intent_accuracy']:.0f}%" if r["intent_accuracy"] is not None else "-",
                      r["server_cpu_cores"], r["server_cpu_per_call"], r["rss_growth_mib_per_call_peak"],
                      r["rss_growth_mib_per_call_median"]])
    cells = [["-" if c is None else str(c) for c in line] for line in lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(head))]
    out = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path, threshold_ms: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["wire_ms_p50"] is not None]
    if not rows:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    xs = [r["callers"] for r in rows]
    for key, style in (("wire_ms_p50", "o-"), ("wire_ms_p90", "s-"), ("wire_ms_p99", "^--")):
        left.plot(xs, [r[key] for r in rows], style, label=key.removeprefix("wire_ms_"))
    left.axhline(threshold_ms, color="grey", linestyle=":", label=f"limit {threshold_ms:g} ms (p90)")
    left.set_ylim(bottom=0)
    left.set_xscale("log", base=2)
    left.set_xticks(xs, [f"{r['callers']}" + (" (mem)" if r["label"] == "memory" else "") for r in rows])
    left.set_xlabel("callers talking at once")
    left.set_ylabel("ms, caller's last speech → bot's first audio (wire)")
    left.legend()
    left.grid(alpha=0.3)
    bottom = np.zeros(len(rows))
    pos = np.arange(len(rows))
    for stage in STAGES:
        vals = np.array([r["stage_ms_mean"][stage] or 0.0 for r in rows])
        right.bar(pos, vals, bottom=bottom, label=stage)
        bottom += vals
    right.set_xticks(pos, [f"{r['callers']}" + (" (mem)" if r["label"] == "memory" else "") for r in rows])
    right.set_xlabel("callers talking at once")
    right.set_ylabel("ms (means: stages add up to the mean wire latency)")
    right.legend(fontsize=8)
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", default="1,2,4,8,16", help="callers talking at once, one level after the other")
    p.add_argument("--turns", type=int, default=4,
                   help="utterances per caller per level (default 4: a bank reply and its 'anything else?' last ~15 s)")
    p.add_argument("--max-p90-s", type=float, default=1.5, help="stop after the first level whose p90 passes this")
    p.add_argument("--memory-calls", type=int, default=20, help="talking callers for the RSS step (0: skip)")
    p.add_argument("--memory-s", type=float, default=60.0, help="how long the RSS step's callers keep talking")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a server setting (YAML value), repeatable: --set end_of_turn_s=0.4")
    p.add_argument("--quiet-s", type=float, default=0.8, help="bot silence that ends its prompt or reply")
    p.add_argument("--stagger-s", type=float, default=1.5, help="a caller's random pause before each utterance")
    p.add_argument("--start-stagger-s", type=float, default=3.0, help="callers dial in at random within this")
    p.add_argument("--turn-timeout-s", type=float, default=12.0, help="no bot audio this long after speech: no reply")
    p.add_argument("--reply-timeout-s", type=float, default=40.0, help="longest a reply may last")
    p.add_argument("--greeting-timeout-s", type=float, default=45.0)
    p.add_argument("--level-timeout-s", type=float, default=240.0, help="callers still talking then are hung up")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sip_latency.json")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    overrides = {"sip_tcp": False, "sip_max_setups_per_s": 100,
                 "max_calls": max(levels + [args.memory_calls]) + 1, **parse_overrides(args.overrides)}
    if overrides["max_calls"] < max(levels + [args.memory_calls]):
        raise SystemExit(f"--set max_calls={overrides['max_calls']} is below the largest level"
                         f" ({max(levels + [args.memory_calls])}): those callers would get 503")
    server = Server(overrides, cwd=ROOT, ready_timeout_s=300)
    try:
        effective = Settings.model_validate(server.settings())
    except Exception as exc:
        raise SystemExit(f"bad settings: {exc}") from None
    args.end_of_turn_ms = effective.end_of_turn_s * 1000
    threshold_ms = args.max_p90_s * 1000

    print("synthesising the callers' utterances (Piper, 8 kHz G.711)...", flush=True)
    utterances = make_utterances()
    load_before, started = os.getloadavg(), datetime.now(timezone.utc)
    print("starting voicebot serve...", flush=True)
    try:
        server.start()
    except ServerDidNotStart as exc:
        print(exc.log_tail, file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    all_turns: list[Turn] = []
    try:
        sampler = Sampler(server.pid, 0.5)
        sampler.start()
        startup_rss = round(rss_mib(server.pid), 1)
        # warm-up: one call, one turn, so every model has loaded and run once before idle RSS
        warm, _ = measure_level(server, sampler, "warm-up", 1, utterances, 1, None, args, 0.0, None, args.seed - 1)
        time.sleep(2.0)
        t_idle = sampler.now_s()
        time.sleep(2.0)
        idle_rss = statistics.median(s["rss_mib"] for s in sampler.since(t_idle))
        print(f"idle RSS after warm-up: {idle_rss:.0f} MiB (at start: {startup_rss} MiB); warm-up turn:"
              f" {warm['wire_ms_p50']} ms", flush=True)
        for i, callers in enumerate(levels):
            row, turns = measure_level(server, sampler, "sweep", callers, utterances, args.turns, None, args, idle_rss,
                                       threshold_ms, args.seed + i)
            rows.append(row)
            all_turns += turns
            tqdm.write(f"  {callers} callers: p50 {row['wire_ms_p50']} / p90 {row['wire_ms_p90']} ms,"
                       f" intent {row['intent_accuracy']}, CPU {row['server_cpu_cores']} cores")
            if row["wire_ms_p90"] is not None and row["wire_ms_p90"] > threshold_ms:
                tqdm.write(f"  p90 passed {args.max_p90_s:g} s at {callers} callers: sweep stops here")
                break
            time.sleep(2.0)
        if args.memory_calls > 0:
            row, turns = measure_level(server, sampler, "memory", args.memory_calls, utterances, None, args.memory_s,
                                       args, idle_rss, None, args.seed + 100)
            rows.append(row)
            all_turns += turns
        sampler.stop.set()
    finally:
        server.stop()

    load_after = os.getloadavg()
    report = {
        "benchmark": "sip_latency", "date": started.isoformat(timespec="seconds"),
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in load_after]},
        "packages": package_versions(),
        "command": " ".join(sys.argv[1:]),
        "settings_overrides": overrides,
        "settings": {**{k: v for k, v in effective.model_dump(mode="json").items() if k not in DROP_FROM_RECORD},
                     "port": server.http_port, "sip_port": server.sip_port, "records_db": "(temporary)"},
        "run": {k: v for k, v in vars(args).items() if k not in ("overrides", "out")},
        "utterances": [{"text": u.text, "intent": u.intent, "speech_s": round(u.voiced_s, 2)} for u in utterances],
        "idle_rss_mib": round(idle_rss, 1), "startup_rss_mib": startup_rss,
        "levels": rows,
        "stages_method": STAGES_METHOD,
        "turn_fields": ["level", "caller", "turn", "utterance", "wire_ms", *STAGES, "inbound_ms", "intent",
                        "intent_ok", "overlap", "split", "heard"],
        "turns": [[t.level, t.caller, t.n, t.utterance, t.wire_ms, *(t.stages.get(s) for s in STAGES), t.inbound_ms,
                   t.intent, t.matched and t.intent == utterances[t.utterance].intent, t.overlap, t.split, t.heard]
                  for t in all_turns],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    png = args.out.with_suffix(".png")
    plot(rows, png, threshold_ms, f"voicebot SIP turn latency on the wire, {machine()['cores']} cores,"
                                  f" {started:%Y-%m-%d}; overrides: {parse_overrides(args.overrides) or 'none'}")
    print()
    print(table(rows))
    print(f"\nidle RSS {idle_rss:.0f} MiB; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after;"
          f" stages are p50s (their means add up to the mean wire latency)")
    print(f"JSON: {args.out}\nPNG:  {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
