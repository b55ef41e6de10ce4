"""SIP capacity on this machine: waves of concurrent calls into a real `voicebot serve`.

Each call is a small UAC written here (raw SIP over UDP on 127.0.0.1, its own RTP socket): INVITE
with PCMU, ACK, listen, BYE.  Per wave it reports call setup time (INVITE sent → 200 OK),
the time from the ACK to the greeting's first audible RTP packet, RTP loss against a 20 ms
stream, packet interval jitter, and the server's CPU use and memory.  The callers stay silent:
this is the SIP/RTP edge, VAD and cached prompts (ASR load is `voicebot bench latency`'s).
Bounded: at most --max-calls at once, each --listen-s long.  JSON to
benchmarks/results/sip_load.json.

    python benchmarks/sip_load.py [--waves 1,5,10,20] [--listen-s 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

from aiortc.rtp import RtpPacket

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from harness import ROOT, Server, ServerDidNotStart, cpu_seconds, machine, rss_mib  # noqa: E402
from sip_caller import SipCall, ulaw_rms  # noqa: E402


async def one_call(server: tuple[str, int], listen_s: float) -> dict:
    call = await SipCall(server, keep_arrivals=True).open()
    result: dict = {"ok": False}
    try:
        response = await call.invite(timeout=10)
        result["setup_ms"] = call.setup_ms
        if response.status != 200:
            result["status"] = response.status
            return result
        ack_at = call.ack()
        await asyncio.sleep(listen_s)
        call.bye()
        packets = [(at, RtpPacket.parse(data)) for at, data in call.rtp.arrivals if len(data) >= 12]
        audio = [(at, p) for at, p in packets if p.payload_type == 0]
        first = next((at for at, p in audio if ulaw_rms(p.payload) > 0.01), None)
        gaps = np.diff([at for at, _ in audio]) * 1000 if len(audio) > 1 else np.array([0.0])
        expected = (audio[-1][0] - audio[0][0]) / 0.02 + 1 if audio else 1
        result.update(ok=True, first_audio_ms=(first - ack_at) * 1000 if first is not None else None,
                      loss_pct=max(0.0, 100 * (1 - len(audio) / expected)),
                      interval_jitter_ms=float(np.std(gaps)), max_gap_ms=float(np.max(gaps)))
        return result
    finally:
        await call.close(linger=0.2)


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def wave(server: tuple[str, int], calls: int, listen_s: float) -> list[dict]:
    async def staggered(i: int) -> dict:
        await asyncio.sleep(i * 0.05)  # a burst, not one instant: 20 calls arrive within a second
        return await one_call(server, listen_s)

    return await asyncio.gather(*(staggered(i) for i in range(calls)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--waves", default="1,5,10,20")
    parser.add_argument("--listen-s", type=float, default=8.0)
    parser.add_argument("--max-calls", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sip_load.json"))
    args = parser.parse_args()
    waves = [min(int(w), args.max_calls) for w in args.waves.split(",")]
    server = Server({"max_calls": max(waves), "sip_tcp": False, "sip_max_setups_per_s": 100}, log=False,
                    ready_timeout_s=180)
    try:
        server.start()
    except ServerDidNotStart:
        raise SystemExit("voicebot serve did not start") from None
    proc, sip = server.proc, server.sip_port
    assert proc is not None
    try:
        idle_rss = rss_mib(proc.pid)
        report = []
        for calls in waves:
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            results = asyncio.run(wave(("127.0.0.1", sip), calls, args.listen_s))
            cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0)
            ok = [r for r in results if r["ok"]]
            first = [r["first_audio_ms"] for r in ok if r["first_audio_ms"] is not None]
            row = {
                "concurrent_calls": calls, "answered": len(ok), "refused": len(results) - len(ok),
                "setup_ms_p50": pct([r["setup_ms"] for r in results if "setup_ms" in r], 50),
                "setup_ms_p90": pct([r["setup_ms"] for r in results if "setup_ms" in r], 90),
                "greeting_first_audio_ms_p50": pct(first, 50), "greeting_first_audio_ms_p90": pct(first, 90),
                "rtp_loss_pct_max": round(max(r["loss_pct"] for r in ok), 2) if ok else None,
                "rtp_interval_jitter_ms_p90": pct([r["interval_jitter_ms"] for r in ok], 90),
                "rtp_max_gap_ms": round(max(r["max_gap_ms"] for r in ok), 1) if ok else None,
                "server_cpu_cores": round(cpu, 2), "server_rss_mib": round(rss_mib(proc.pid), 1),
            }
            report.append(row)
            print(json.dumps(row), flush=True)
            time.sleep(2)
        out = {"machine": machine(),
               "listen_s": args.listen_s, "idle_rss_mib": round(idle_rss, 1), "waves": report,
               "note": ("UAC, RTP and server on one host over 127.0.0.1; the callers stay silent, so this is SIP, RTP, "
                        "VAD and cached prompts (speech recognition load: voicebot bench latency)")}
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
