"""Soak: SIPp callers at a fixed call rate into a real `voicebot serve` for N minutes.

Every caller speaks: sip/scenarios/uac_speak.xml listens to the greeting for 3 s, says "What's
my balance?" (Piper's voice through a phone line, G.711 mu-law, made here with the tests'
speech helpers) and stays on the line, its RTP going on as silence, until it hangs up after
--hold-s.  The server's call limit is the host's rated concurrency (--concurrency, default the
`max_calls` setting); the call rate offers --overload times that many calls at once, so some
INVITEs find the server full and must get 503 with Retry-After (a 503 without it fails the
SIPp call).  Meanwhile the server's RSS and CPU are sampled every --sample-s.  At the end every
admitted call (a 200 the caller got) must have a record, found by its SIP Call-ID, with an end
time and an outcome: none lost.

This is a benchmark, not a test: JSON to benchmarks/results/soak.json and a summary table.

    python benchmarks/soak.py [--minutes 10] [--concurrency 20] [--hold-s 20] [--overload 1.25]
    make soak                     # the same, 10 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from harness import ROOT, Sampler, Server, ServerDidNotStart, free_port, machine, phone_speech  # noqa: E402
from voicebot.config import Settings  # noqa: E402
from voicebot.sip.rtp import g711_encode  # noqa: E402

SCENARIO = ROOT / "sip" / "scenarios" / "uac_speak.xml"
SAY = "What's my balance?"
LISTEN_S = 3.0  # the scenario's pause before the caller speaks


def caller_audio(folder: Path, seconds: float) -> float:
    """caller.ulaw: the question, then silence up to ``seconds``; returns the speech's length."""
    [pcm] = phone_speech([SAY])
    pad = max(0, int(seconds * 8000) * 2 - len(pcm))
    (folder / "caller.ulaw").write_bytes(g711_encode(pcm + b"\0" * pad))
    return len(pcm) / 16000


def slope_per_min(samples: list[dict[str, float]]) -> float:
    """Least-squares RSS growth in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    xs = [s["t_s"] / 60 for s in samples]
    ys = [s["rss_mib"] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def sipp_log(folder: Path) -> tuple[set[str], list[tuple[str, int]]]:
    """The scenario's per-call lines: admitted Call-IDs, and (Call-ID, Retry-After) of refusals."""
    admitted, refused = set(), []
    for path in folder.glob("uac_speak_*_logs.log"):
        for line in path.read_text(errors="replace").splitlines():
            if m := re.match(r"admitted (\S+)", line):
                admitted.add(m[1])
            elif m := re.match(r"refused (\S+) retry_after=(\d+)", line):
                refused.append((m[1], int(m[2])))
    return admitted, refused


def sipp_counts(folder: Path) -> dict[str, int]:
    """SIPp's own totals: calls created, successful and failed (its statistics CSV)."""
    paths = sorted(folder.glob("uac_speak_*_.csv"))
    if not paths:
        return {}
    lines = [line for line in paths[-1].read_text().splitlines() if line.strip()]
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last))
    return {"created": int(row.get("TotalCallCreated", 0)), "successful": int(row.get("SuccessfulCall(C)", 0)),
            "failed": int(row.get("FailedCall(C)", 0))}


def records(db: Path) -> dict[str, dict]:
    """Every SIP call's record by its SIP Call-ID: state, outcome, end, and what was said."""
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT c.id, c.state, c.outcome, c.started_at, c.ended_at, e.data FROM calls c"
                           " JOIN events e ON e.call_id = c.id AND e.kind = 'sip_call'").fetchall()
        turns = con.execute("SELECT call_id, speaker, timings FROM turns").fetchall()
    said: dict[str, list[dict]] = {}
    for t in turns:
        said.setdefault(t["call_id"], []).append({"speaker": t["speaker"], "timings": json.loads(t["timings"])})
    out = {}
    for r in rows:
        out[json.loads(r["data"])["sip_call_id"]] = {"id": r["id"], "state": r["state"], "outcome": r["outcome"],
                                                     "started_at": r["started_at"], "ended_at": r["ended_at"],
                                                     "turns": said.get(r["id"], [])}
    return out


def most_at_once(recs: list[dict]) -> int:
    """The most calls the records show open at the same time (the server's limit must hold)."""
    edges = sorted([(r["started_at"], 1) for r in recs] + [(r["ended_at"], -1) for r in recs if r["ended_at"]])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def main() -> int:
    settings = Settings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed (default 10)")
    p.add_argument("--concurrency", type=int, default=settings.max_calls,
                   help="the server's call limit, the host's rated concurrency"
                        f" (default max_calls={settings.max_calls})")
    p.add_argument("--hold-s", type=float, default=20.0, help="how long an admitted caller stays on the line")
    p.add_argument("--overload", type=float, default=1.25,
                   help="calls offered at once, as a multiple of --concurrency (above 1: some get 503)")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS/CPU sampling period")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = p.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed (Debian sip-tester; `make test-deps` installs it)", file=sys.stderr)
        return 2

    rate = args.overload * args.concurrency / args.hold_s  # calls per second: Little's law
    total = max(1, round(rate * args.minutes * 60))
    work = Path(tempfile.mkdtemp(prefix="voicebot-soak-"))
    speech_s = caller_audio(work, args.hold_s)
    token = secrets.token_hex(16)
    server = Server({"max_calls": args.concurrency, "sip_tcp": False, "sip_max_setups_per_s": max(10.0, 4 * rate),
                     "api_tokens": [{"name": "soak", "token": token, "role": "admin"}]},
                    work=work, ready_timeout_s=300, cwd=ROOT)
    db = server.db
    load_before = os.getloadavg()
    try:
        try:
            server.start()
        except ServerDidNotStart as exc:
            print(exc.log_tail, file=sys.stderr)
            return 1
        sip = server.sip_port
        sampler = Sampler(server.pid, args.sample_s)
        sampler.start()
        print(f"soak: {total} calls at {rate:.2f}/s for {args.minutes:g} min, limit {args.concurrency},"
              f" callers hold {args.hold_s:g} s; work in {work}", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            [sipp, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
             "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", str(total), "-r", f"{rate:.4f}",
             "-rp", "1000", "-l", str(3 * args.concurrency), "-d", str(int((args.hold_s - LISTEN_S) * 1000)),
             "-timeout", f"{int(args.minutes * 60 + args.hold_s + 120)}s", "-nostdin", "-trace_err", "-trace_logs",
             "-trace_stat", "-fd", "5", f"127.0.0.1:{sip}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
        placed_s = time.monotonic() - started
        time.sleep(3)  # the last hang-ups reach the records
        sampler.stop.set()
        sampler.join()
        recs = records(db)
    finally:
        server.stop()

    admitted, refused = sipp_log(work)
    counts = sipp_counts(work)
    lost = sorted(cid for cid in admitted if cid not in recs or recs[cid]["outcome"] is None
                  or recs[cid]["ended_at"] is None)
    unknown = sorted(set(recs) - admitted)  # a record for a call the caller never saw answered
    outcomes: dict[str, int] = {}
    for cid in admitted & set(recs):
        outcomes[recs[cid]["outcome"] or "none"] = outcomes.get(recs[cid]["outcome"] or "none", 0) + 1
    heard = [t for r in recs.values() for t in r["turns"] if t["speaker"] == "caller"]
    first_audio = [t["timings"]["first_audio_ms"] for t in heard if "first_audio_ms" in t["timings"]]
    durations = [r["ended_at"] - r["started_at"] for r in recs.values() if r["ended_at"]]
    asr_failures = (work / "server.log").read_text(errors="replace").count("speech recognition failed")
    samples = sampler.samples
    warm = [s for s in samples if s["t_s"] >= min(60.0, placed_s / 4)]  # after the first wave of calls
    half = len(warm) // 2
    # RSS swings with each ASR batch; its floor (10th percentile) is what a leak would lift
    rss_first = percentile([s["rss_mib"] for s in warm[:half]], 0.1) if half else None
    rss_last = percentile([s["rss_mib"] for s in warm[half:]], 0.1) if half else None
    cpu_cores = ((samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / (samples[-1]["t_s"] - samples[0]["t_s"])
                 if len(samples) > 1 and samples[-1]["t_s"] > samples[0]["t_s"] else None)
    report = {
        "machine": {**machine(), "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "run": {"short_run": args.minutes < 10, "minutes": args.minutes, "rated_concurrency": args.concurrency,
                "hold_s": args.hold_s, "overload": args.overload, "call_rate_per_s": round(rate, 3),
                "calls_offered": total,
                "caller_speech": SAY, "caller_speech_s": round(speech_s, 2), "placing_took_s": round(placed_s, 1),
                "sipp_exit": result.returncode},
        "calls": {"offered": counts.get("created"), "admitted": len(admitted), "refused_503": len(refused),
                  "refused_with_retry_after": sum(1 for _, ra in refused if ra > 0),
                  "retry_after_s": sorted({ra for _, ra in refused}), "sipp_failed": counts.get("failed"),
                  "admitted_with_record": len(admitted & set(recs)), "lost": lost,
                  "records_not_seen_answered": unknown, "outcomes": outcomes,
                  "caller_turns_transcribed": len(heard), "asr_failures_logged": asr_failures,
                  "record_duration_s_mean": round(statistics.fmean(durations), 1) if durations else None,
                  "record_duration_s_p90": percentile(durations, 0.9),
                  "most_calls_at_once": most_at_once(list(recs.values())),
                  "first_audio_ms_p50": percentile(first_audio, 0.5),
                  "first_audio_ms_p90": percentile(first_audio, 0.9)},
        "server": {"rss_mib_start": samples[0]["rss_mib"] if samples else None,
                   "rss_mib_max": max((s["rss_mib"] for s in samples), default=None),
                   "rss_mib_floor_first_half": rss_first, "rss_mib_floor_second_half": rss_last,
                   "rss_mib_median": statistics.median(s["rss_mib"] for s in samples) if samples else None,
                   "rss_slope_mib_per_min": round(slope_per_min(warm), 2), "cpu_cores_mean": round(cpu_cores, 2)
                   if cpu_cores is not None else None, "samples": samples},
    }
    growth = (rss_last - rss_first) if rss_first is not None and rss_last is not None else None
    report["verdict"] = {
        "no_admitted_call_lost": not lost and len(admitted) > 0,
        "refusals_carry_retry_after": counts.get("failed") == 0 and all(ra > 0 for _, ra in refused),
        "overload_was_refused": len(refused) > 0,
        "limit_held": most_at_once(list(recs.values())) <= args.concurrency,
        # flat: the second half's RSS floor within 5 % (and 50 MiB) of the first half's
        "rss_flat": growth is not None and growth <= max(0.05 * rss_first, 0) and growth <= 50,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    c, s, v = report["calls"], report["server"], report["verdict"]
    rows = [("calls offered", c["offered"]), ("admitted (200)", c["admitted"]),
            ("refused (503 + Retry-After)", f"{c['refused_with_retry_after']} of {c['refused_503']}"),
            ("SIPp failed calls", c["sipp_failed"]), ("admitted with a record + outcome",
                                                      c["admitted_with_record"] - len(lost)),
            ("lost", len(lost)), ("outcomes", ", ".join(f"{k} {n}" for k, n in sorted(outcomes.items()))),
            ("caller turns transcribed / ASR failures", f"{c['caller_turns_transcribed']} / {asr_failures}"),
            ("most calls at once (records)", c["most_calls_at_once"]),
            ("call length in records mean / p90 s", f"{c['record_duration_s_mean']} / {c['record_duration_s_p90']}"),
            ("first audio after speech p50 / p90 ms", f"{c['first_audio_ms_p50']} / {c['first_audio_ms_p90']}"),
            ("RSS start / max MiB", f"{s['rss_mib_start']} / {s['rss_mib_max']}"),
            ("RSS floor (p10) 1st / 2nd half MiB", f"{rss_first} / {rss_last}"),
            ("RSS slope MiB/min", s["rss_slope_mib_per_min"]), ("server CPU cores (mean)", s["cpu_cores_mean"])]
    width = max(len(k) for k, _ in rows)
    print(f"\nsoak: {args.minutes:g} min, {rate:.2f} calls/s, limit {args.concurrency}, hold {args.hold_s:g} s")
    for k, val in rows:
        print(f"  {k:<{width}}  {val}")
    print("  " + "  ".join(f"{k}={'yes' if ok else 'NO'}" for k, ok in v.items()))
    print(f"JSON: {args.out}")
    shutil.rmtree(work, ignore_errors=True) if all(v.values()) else print(f"kept {work} for a look")
    return 0 if all(v.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
