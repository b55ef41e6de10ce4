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
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiortc.rtp import RtpPacket  # noqa: E402

from voicebot.sip.message import SipResponse, parse  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ulaw_energy(payload: bytes) -> float:
    """RMS of a PCMU payload, decoded with the G.711 formula."""
    u = ~np.frombuffer(payload, dtype=np.uint8).astype(np.int32) & 0xFF
    sign, exponent, mantissa = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    pcm = np.where(sign, 0x84 - magnitude, magnitude - 0x84).astype(np.float64) / 32768
    return float(np.sqrt(np.mean(pcm ** 2))) if len(pcm) else 0.0


class Rtp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrivals.append((time.monotonic(), data))


class Sip(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse(data)
        except Exception:
            return
        if isinstance(message, SipResponse):
            self.responses.put_nowait(message)
        elif data.startswith(b"BYE "):  # the bot hung up first: say OK
            lines = [line for line in data.decode().split("\r\n") if line.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
            assert self.transport is not None
            self.transport.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), addr)


async def one_call(server: tuple[str, int], listen_s: float) -> dict:
    loop = asyncio.get_running_loop()
    sip_transport, sip = await loop.create_datagram_endpoint(Sip, local_addr=("127.0.0.1", 0))
    rtp_transport, rtp = await loop.create_datagram_endpoint(Rtp, local_addr=("127.0.0.1", 0))
    sip_port, rtp_port = sip_transport.get_extra_info("sockname")[1], rtp_transport.get_extra_info("sockname")[1]
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    sdp = (f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
    head = (f"sip:bank@{server[0]}:{server[1]} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sip_port};branch=z9hG4bK{{b}}\r\n"
            f"From: <sip:bench@127.0.0.1>;tag={tag}\r\nTo: <sip:bank@{server[0]}>{{to_tag}}\r\nCall-ID: {call_id}\r\n"
            f"Max-Forwards: 70\r\nContact: <sip:bench@127.0.0.1:{sip_port}>\r\n")
    invite = ("INVITE " + head.format(b=secrets.token_hex(6), to_tag="") + "CSeq: 1 INVITE\r\n"
              f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
    result: dict = {"ok": False}
    try:
        sent = time.monotonic()
        sip_transport.sendto(invite, server)
        while True:
            response = await asyncio.wait_for(sip.responses.get(), 10)
            if response.status >= 200:
                break
        result["setup_ms"] = (time.monotonic() - sent) * 1000
        if response.status != 200:
            result["status"] = response.status
            return result
        to_tag = ";tag=" + (response.headers.get("To") or "").split(";tag=")[-1]
        ack_at = time.monotonic()
        sip_transport.sendto(("ACK " + head.format(b=secrets.token_hex(6), to_tag=to_tag) +
                              "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").encode(), server)
        await asyncio.sleep(listen_s)
        sip_transport.sendto(("BYE " + head.format(b=secrets.token_hex(6), to_tag=to_tag) +
                              "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").encode(), server)
        packets = [(at, RtpPacket.parse(data)) for at, data in rtp.arrivals if len(data) >= 12]
        audio = [(at, p) for at, p in packets if p.payload_type == 0]
        first = next((at for at, p in audio if ulaw_energy(p.payload) > 0.01), None)
        gaps = np.diff([at for at, _ in audio]) * 1000 if len(audio) > 1 else np.array([0.0])
        expected = (audio[-1][0] - audio[0][0]) / 0.02 + 1 if audio else 1
        result.update(ok=True, first_audio_ms=(first - ack_at) * 1000 if first is not None else None,
                      loss_pct=max(0.0, 100 * (1 - len(audio) / expected)),
                      interval_jitter_ms=float(np.std(gaps)), max_gap_ms=float(np.max(gaps)))
        return result
    finally:
        await asyncio.sleep(0.2)
        sip_transport.close()
        rtp_transport.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
    http, sip = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    db = Path(f"/tmp/voicebot-sip-load-{os.getpid()}.sqlite3")
    proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--port", str(http), "--sip-port", str(sip),
                             "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "VOICEBOT_SIP_TCP": "false",
                                 "VOICEBOT_MAX_CALLS": str(max(waves)), "VOICEBOT_SIP_MAX_SETUPS_PER_S": "100"})
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("voicebot serve did not start")
                time.sleep(0.5)
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
        out = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
               "listen_s": args.listen_s, "idle_rss_mib": round(idle_rss, 1), "waves": report,
               "note": ("UAC, RTP and server on one host over 127.0.0.1; the callers stay silent, so this is SIP, RTP, "
                        "VAD and cached prompts (speech recognition load: voicebot bench latency)")}
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.out}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        db.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
