"""voicebot against a stock pipecat 1.14 bot over WebRTC: the same caller, the same utterances,
back to back, measured on the wire at the caller.

Each stack in turn runs as a server inside a private network namespace (aiortc gathers no
loopback candidates, so caller and server talk over a veth pair on 198.18.0.0/24 that exists
only there): (a) ``voicebot serve`` with its settings (plus ``--set``), (b)
``benchmarks/stock_pipecat`` (SmallWebRTCTransport, WhisperSTTService, SileroVADAnalyzer with
pipecat's default smart-turn stop strategy, PiperTTSService, a canned responder for the LLM).

One aiortc caller, written the way pipecat's SmallWebRTC examples write one (the SDP offer POSTed
to ``/api/offer``, a "chat" data channel with ``ping`` keep-alives and an RTVI client-ready),
calls each server once, waits out the greeting, then says the script (Piper's joe voice,
synthesised once, deterministic), one utterance at a time, each when the bot has been quiet for
``--quiet-s``.  Per turn it measures

    latency = first voiced sample received from the bot - last voiced sample sent by the caller

where a sample is voiced above ``VOICED`` (-30 dBFS), "sent" is when the microphone track hands
the 20 ms frame holding it to aiortc's encoder (plus its offset in the frame) and "received" is
when aiortc's decoder hands over the frame holding it (plus its offset).  So the number includes
the bot's end-of-turn wait, ASR, reply, TTS and both directions of Opus/RTP/jitter buffering on
the loopback veth.

    sudo .venv/bin/python benchmarks/webrtc_latency.py            # both stacks, ~5-6 min on 2 cores
    ... --stacks pipecat --turns 10 --set end_of_turn=smart_turn   # options

Writes ``benchmarks/results/webrtc_latency.json`` (machine, versions, per-turn raw data, per-stack
percentiles, the voicebot/pipecat ratio) and ``webrtc_latency.png``.  Needs root (``ip netns``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import fractions
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
from benchmarks.harness import cpu_model, package_versions, parse_overrides  # noqa: E402
from tests.netns import SERVER_IP  # noqa: E402
PORTS = {"voicebot": 8080, "pipecat": 8081}
NS_ENV = "WEBRTC_LATENCY_NETNS"
RATE = 48000
FRAME = RATE // 50  # 20 ms
VOICED = 1000  # |sample| above this (-30 dBFS) is voice, on both directions
PING_EVERY_S = 0.5
REPLY_TIMEOUT_S = 12.0
GREETING_TIMEOUT_S = 120.0
MAX_REPLY_S = 40.0

# What the caller says, in order: the bank domain's flows answer each in turn (the canned
# responder answers with the same words), no flow twice (the domain remembers an account and a
# card, so a second balance would skip a question).  Ten texts, each synthesised once.  The
# confirmations are answered "Don't ..." because the stock pipeline misses or splits the
# obvious answers: a bare "No." (0.25 s voiced) never starts a turn there (Silero start_secs 0.2
# at confidence 0.7), and "No, don't block it." is two turns (smart-turn calls "No," complete
# at the comma's pause), the second answered over the first.  The second field says whether the
# reply's first sentence is a fixed prompt ("fixed": voicebot synthesises those at start-up) or
# filled in with the caller's values at run time ("filled": synthesised live on both stacks).
SCRIPT = [
    ("What's my balance?", "fixed"),
    ("Four five six seven.", "filled"),
    ("I lost my card.", "fixed"),
    ("Four three two one.", "filled"),
    ("Don't block it.", "fixed"),
    ("When are you open?", "fixed"),
    ("I'd like to pay my credit card.", "fixed"),
    ("Fifty dollars.", "fixed"),
    ("From checking.", "filled"),
    ("Don't pay it.", "fixed"),
]


# -- the network namespace ------------------------------------------------------------------


def in_namespace(argv: list[str]) -> int:
    """Run this script again inside a fresh namespace with a veth pair (the tests' own); remove
    it after."""
    from tests import netns

    why_not = netns.available()
    if why_not is not None:
        print(f"webrtc_latency: {why_not}", file=sys.stderr)
        return 2
    with netns.namespace() as name:
        return subprocess.run([*netns.exec_prefix(name), sys.executable, __file__, *argv],
                              env={**os.environ, NS_ENV: name}).returncode


# -- the utterances -------------------------------------------------------------------------


@dataclass
class Utterance:
    text: str
    pcm: np.ndarray  # int16 at RATE
    first_voiced: int
    last_voiced: int

    @property
    def voiced_s(self) -> float:
        return (self.last_voiced - self.first_voiced + 1) / RATE


def synthesise(texts: list[str]) -> dict[str, Utterance]:
    """Each distinct text once, with Piper's joe voice as the tests' speech helpers make it."""
    from voicebot.audio import resample
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    engine = PiperEngine(str(model), str(model) + ".json")
    out = {}
    for text in dict.fromkeys(texts):
        pcm = resample(b"".join(engine.sentences(text, deterministic=True)), engine.sample_rate, RATE)
        samples = np.frombuffer(pcm, dtype=np.int16)
        voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > VOICED)
        out[text] = Utterance(text, samples, int(voiced[0]), int(voiced[-1]))
    return out


# -- the caller -----------------------------------------------------------------------------


def _media_classes():  # type: ignore[no-untyped-def]
    """aiortc and av, imported once the namespace is entered (the parent never needs them)."""
    from aiortc import MediaStreamTrack
    from av import AudioFrame

    class Microphone(MediaStreamTrack):
        """20 ms frames in real time: the utterance being said, else silence.  Notes when the
        frames holding an utterance's first and last voiced samples go to the encoder."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._pts = 0
            self._speaking: Utterance | None = None
            self._pos = 0
            self._done: asyncio.Future[tuple[float, float]] | None = None
            self._first_sent: float | None = None

        def say(self, utterance: Utterance) -> asyncio.Future[tuple[float, float]]:
            """Starts ``utterance`` on the next frame; resolves to (first, last) voiced sample
            sent, monotonic seconds."""
            self._speaking, self._pos, self._first_sent = utterance, 0, None
            self._done = asyncio.get_running_loop().create_future()
            return self._done

        @property
        def speaking(self) -> bool:
            return self._speaking is not None

        async def recv(self) -> AudioFrame:
            if self._start is None:
                self._start = time.monotonic()
            else:
                self._pts += FRAME
                delay = self._start + self._pts / RATE - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pcm = np.zeros(FRAME, dtype=np.int16)
            now = time.monotonic()
            u = self._speaking
            if u is not None:
                lo, hi = self._pos, self._pos + FRAME
                chunk = u.pcm[lo:hi]
                pcm[: len(chunk)] = chunk
                if self._first_sent is None and lo <= u.first_voiced < hi:
                    self._first_sent = now + (u.first_voiced - lo) / RATE
                if lo <= u.last_voiced < hi and self._done is not None and not self._done.done():
                    self._done.set_result((self._first_sent or now, now + (u.last_voiced - lo) / RATE))
                self._pos = hi
                if hi >= len(u.pcm):
                    self._speaking = None
            frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
            frame.planes[0].update(pcm.tobytes())
            frame.pts = self._pts
            frame.sample_rate = RATE
            frame.time_base = fractions.Fraction(1, RATE)
            return frame

    return Microphone


class Ear:
    """Reads the bot's audio track; keeps the voiced stretches (first, last) at frame resolution."""

    def __init__(self) -> None:
        self.last_voiced: float | None = None
        self.onsets: list[float] = []  # a voiced frame after >= 100 ms of silence
        self.frames = 0

    async def listen(self, track) -> None:  # type: ignore[no-untyped-def]
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            self.frames += 1
            samples = frame.to_ndarray().reshape(-1)
            channels = len(frame.layout.channels)
            if channels > 1:
                samples = samples.reshape(-1, channels)[:, 0] if frame.format.is_packed else samples[: frame.samples]
            voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > VOICED)
            if len(voiced) == 0:
                continue
            first = now + float(voiced[0]) / frame.sample_rate
            if self.last_voiced is None or first - self.last_voiced > 0.1:
                self.onsets.append(first)
            self.last_voiced = now + float(voiced[-1]) / frame.sample_rate

    def first_after(self, t: float) -> float | None:
        return next((x for x in self.onsets if x > t), None)

    def quiet_for(self, now: float) -> float:
        return now - self.last_voiced if self.last_voiced is not None else float("inf")


@dataclass
class Turn:
    index: int
    text: str
    reply_kind: str  # "fixed" or "filled": see SCRIPT
    voiced_s: float
    sent_first: float  # seconds since the call was answered, caller's clock
    sent_last: float
    reply_at: float | None
    latency_s: float | None
    bot_voiced_during_utterance: bool  # the bot spoke while the caller did: excluded from stats
    reply_s: float | None = None  # first voiced sample to the quiet that ended the reply
    server_first_audio_s: float | None = None  # voicebot's own record: speech end → first audio to the edge


@dataclass
class CallResult:
    stack: str
    answered_s: float  # offer POSTed → greeting's first voiced sample
    greeting_s: float | None
    turns: list[Turn] = field(default_factory=list)
    ident: str = ""
    server_turns: Any = None
    server_config: Any = None
    error: str | None = None


async def call(stack: str, base: str, script: list[tuple[Utterance, str]], quiet_s: float, token: str,
               progress: Any) -> CallResult:
    import httpx
    from aiortc import RTCPeerConnection, RTCSessionDescription

    Microphone = _media_classes()
    pc = RTCPeerConnection()
    mic = Microphone()
    ear = Ear()
    pc.addTrack(mic)
    pc.addTransceiver("video", direction="recvonly")  # pipecat's client offers to receive video
    chat = pc.createDataChannel("chat")
    tasks: list[asyncio.Task] = []

    @pc.on("track")
    def on_track(track) -> None:  # type: ignore[no-untyped-def]
        if track.kind == "audio":
            tasks.append(asyncio.ensure_future(ear.listen(track)))

    async def pinger() -> None:  # as pipecat's clients keep a SmallWebRTC connection alive
        ready = json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": uuid.uuid4().hex[:8],
                            "data": {"version": "1.0.0", "about": {"library": "aiortc", "platform": "python"}}})
        while True:
            if chat.readyState == "open":
                if ready:
                    chat.send(ready)
                    ready = ""
                chat.send(f"ping: {int(time.time() * 1000)}")
            await asyncio.sleep(PING_EVERY_S)

    async def wait_quiet(limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if ear.quiet_for(time.monotonic()) >= quiet_s:
                return True
            await asyncio.sleep(0.02)
        return False

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)  # aiortc gathers its candidates here
        posted = time.monotonic()
        reply = await http.post("/api/offer", json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type,
                                                    "pc_id": None, "restart_pc": False})
        reply.raise_for_status()
        answer = reply.json()
        result = CallResult(stack, 0.0, None, ident=answer.get("call_id") or answer.get("pc_id") or "")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        tasks.append(asyncio.ensure_future(pinger()))
        try:
            deadline = posted + GREETING_TIMEOUT_S
            while not ear.onsets:
                if time.monotonic() > deadline:
                    raise TimeoutError("no greeting")
                await asyncio.sleep(0.02)
            answered = ear.onsets[0]
            result.answered_s = answered - posted
            await wait_quiet(MAX_REPLY_S * 2)
            result.greeting_s = (ear.last_voiced or answered) - answered
            for i, (utterance, kind) in enumerate(script):
                onsets_before = len(ear.onsets)
                first, last = await mic.say(utterance)
                overlap = bool(len(ear.onsets) > onsets_before or (ear.last_voiced or 0.0) > first)
                deadline = last + REPLY_TIMEOUT_S
                heard = None
                while heard is None and time.monotonic() < deadline:
                    heard = ear.first_after(last)
                    await asyncio.sleep(0.01)
                turn = Turn(i, utterance.text, kind, round(utterance.voiced_s, 3), round(first - answered, 3),
                            round(last - answered, 3), None if heard is None else round(heard - answered, 3),
                            None if heard is None else round(heard - last, 4), overlap)
                if heard is not None:
                    await wait_quiet(MAX_REPLY_S)
                    turn.reply_s = round((ear.last_voiced or heard) - heard, 3)
                result.turns.append(turn)
                progress.set_postfix_str(f"{stack}: {turn.latency_s if turn.latency_s is not None else 'no reply'} s")
                progress.update(1)
            try:
                if stack == "voicebot":
                    r = await http.get(f"/api/calls/{result.ident}", headers={"Authorization": f"Bearer {token}"})
                    result.server_turns = r.json().get("turns", [])
                    said = [t for t in result.server_turns if t.get("speaker") == "caller"]
                    if len(said) == len(result.turns):  # one record per utterance: pair them
                        for turn, record in zip(result.turns, said):
                            ms = (record.get("timings") or {}).get("first_audio_ms")
                            turn.server_first_audio_s = None if ms is None else round(ms / 1000, 4)
                else:
                    result.server_turns = (await http.get("/api/turns", params={"pc_id": result.ident})).json()
                    result.server_config = (await http.get("/api/config")).json()
            except (httpx.HTTPError, ValueError) as exc:
                result.server_turns = f"not available: {exc}"
        except Exception as exc:  # the other stack still runs; the JSON says what went wrong
            result.error = f"{type(exc).__name__}: {exc}"
        finally:
            for task in tasks:
                task.cancel()
            await pc.close()
    return result


# -- the servers ----------------------------------------------------------------------------


class Server:
    """One stack's server process in this namespace, its output in ``log``."""

    def __init__(self, stack: str, folder: Path, voicebot_settings: dict[str, Any]) -> None:
        self.stack, self.port = stack, PORTS[stack]
        self.base = f"http://{SERVER_IP}:{self.port}"
        self.log = folder / f"{stack}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop(NS_ENV, None)
        if stack == "voicebot":
            config = folder / "voicebot.yaml"
            import yaml

            config.write_text(yaml.safe_dump(voicebot_settings))
            argv = ["-m", "voicebot.cli", "serve", "--config", str(config), "--host", SERVER_IP,
                    "--port", str(self.port)]
        else:
            argv = ["-m", "benchmarks.stock_pipecat.server", "--host", SERVER_IP, "--port", str(self.port)]
        self._log_file = self.log.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=self._log_file,
                                        stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 180) -> float:
        import httpx

        deadline = self.started + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.stack} server exited ({self.process.returncode}):\n"
                                   + self.log.read_text()[-3000:])
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.stack} server not up after {timeout_s} s:\n" + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()


def log_notes(stack: str, log: str) -> dict[str, Any]:
    """Counts from a server's log that explain its turn taking."""
    if stack != "pipecat":
        return {"warnings": sum(" WARNING " in line or "| WARNING" in line for line in log.splitlines())}
    return {
        "smart_turn_complete": log.count("End of Turn result: EndOfTurnState.COMPLETE"),
        "smart_turn_incomplete": log.count("End of Turn result: EndOfTurnState.INCOMPLETE"),
        "smart_turn_stop_secs_fallback": log.count("End of Turn complete due to stop_secs"),
        "turn_inference_triggered_by": sorted(set(re.findall(r"inference triggered \(strategy: ([^)\s]+)", log))),
        "turn_inference_triggered": log.count("User turn inference triggered"),
        "transcriptions": log.count("Transcription: ["),
        "transcripts": re.findall(r"Transcription: \[ ?(.*?) ?\]", log),
        "stt_processing_s": [float(x) for x in re.findall(r"WhisperSTTService#\d+ processing time: ([\d.]+)s", log)],
        "tts_ttfb_s": [float(x) for x in re.findall(r"PiperTTSService#\d+ TTFB: ([\d.]+)s", log)],
        "warnings": log.count("| WARNING"),
        "errors": log.count("| ERROR"),
    }


# -- results --------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def clean(turns: list[Turn]) -> list[float]:
    """Latencies of the turns that count: answered, and the bot silent while the caller spoke."""
    return [t.latency_s for t in turns if t.latency_s is not None and not t.bot_voiced_during_utterance]


def stats(result: CallResult) -> dict[str, Any]:
    measured = clean(result.turns)
    by_kind = {kind: {"measured": len(values), "p50_s": pct(values, 50), "max_s": max(values, default=None)}
               for kind in ("fixed", "filled") for values in [clean([t for t in result.turns if t.reply_kind == kind])]}
    return {"turns": len(result.turns), "measured": len(measured),
            "no_reply": sum(t.latency_s is None for t in result.turns),
            "overlapped": sum(t.bot_voiced_during_utterance for t in result.turns),
            "p50_s": pct(measured, 50), "p90_s": pct(measured, 90), "p99_s": pct(measured, 99),
            "mean_s": round(float(np.mean(measured)), 4) if measured else None,
            "min_s": min(measured, default=None), "max_s": max(measured, default=None), "by_reply_kind": by_kind}


def machine(load_before: list[float]) -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def versions() -> dict[str, Any]:
    out: dict[str, Any] = dict(package_versions(("voicebot", "pipecat-ai", "aiortc", "av", "faster-whisper",
                                                 "ctranslate2", "piper-tts", "onnxruntime", "numpy")))
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True,
                                    text=True).stdout.strip())
        out["git"] = f"{head}{'+dirty' if dirty else ''}"
    except OSError:
        out["git"] = None
    return out


def plot(results: list[CallResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"voicebot": "tab:blue", "pipecat": "tab:orange"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
    data = [clean(r.turns) for r in results]
    labels = [r.stack for r in results]
    if any(data):
        left.boxplot([d or [np.nan] for d in data], tick_labels=labels, whis=(0, 100), widths=0.5)
    for i, (r, d) in enumerate(zip(results, data), start=1):
        jitter = np.linspace(-0.12, 0.12, len(d)) if d else []
        left.scatter(np.full(len(d), i) + jitter, d, s=14, color=colours.get(r.stack), zorder=3)
        xs = [t.index + 1 for t in r.turns if t.latency_s is not None]
        ys = [t.latency_s for t in r.turns if t.latency_s is not None]
        right.plot(xs, ys, "o-", color=colours.get(r.stack), label=r.stack, ms=4)
    left.set_ylabel("caller's last voiced sample → bot's first (s)")
    left.set_title("per-turn latency over WebRTC")
    left.set_ylim(bottom=0)
    longest = max(results, key=lambda r: len(r.turns), default=None)
    if longest is not None and longest.turns:
        right.set_xticks([t.index + 1 for t in longest.turns])
        right.set_xticklabels([f"{t.index + 1}. {t.text[:22]}{' *' if t.reply_kind == 'filled' else ''}"
                               for t in longest.turns], rotation=35, ha="right", fontsize=8)
    for i, d in enumerate(data, start=1):
        if d:
            left.annotate(f"p50 {np.percentile(d, 50):.2f} s", (i, float(np.percentile(d, 50))),
                          xytext=(48, 0), textcoords="offset points", fontsize=8, va="center")
    right.set_title("by turn, same utterances on both (* reply filled in at run time)", fontsize=10)
    right.set_ylim(bottom=0)
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(report: dict[str, Any]) -> str:
    def cell(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "-"

    rows = [("stack", "turns", "measured", "p50 s", "p90 s", "p99 s", "mean s", "min s", "max s", "p50 fixed",
             "p50 filled")]
    for stack, s in report["stats"].items():
        rows.append((stack, str(s["turns"]), str(s["measured"]),
                     *(cell(s[k]) for k in ("p50_s", "p90_s", "p99_s", "mean_s", "min_s", "max_s")),
                     *(cell(s["by_reply_kind"][k]["p50_s"]) for k in ("fixed", "filled"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    ratio = report.get("ratio_voicebot_over_pipecat") or {}
    if ratio:
        lines.append("voicebot / pipecat: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -"
                                                       for k, v in ratio.items()))
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    lines = (SCRIPT * ((args.turns + len(SCRIPT) - 1) // len(SCRIPT)))[: args.turns]
    utterances = synthesise([text for text, _ in lines])
    script = [(utterances[text], kind) for text, kind in lines]
    stacks = [s for s in args.stacks.split(",") if s]
    token = secrets.token_hex(16)
    voicebot_settings: dict[str, Any] = {"sip": False,
                                         "api_tokens": [{"name": "bench", "token": token, "role": "admin"}]}
    results: list[CallResult] = []
    servers: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="webrtc-latency-") as tmp, \
            tqdm(total=len(script) * len(stacks), unit="turn", desc="webrtc latency") as progress:
        folder = Path(args.logs or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        voicebot_settings.update(records_db=str(folder / "calls.sqlite3"), **parse_overrides(args.set))
        for stack in stacks:
            progress.set_postfix_str(f"{stack}: starting")
            server = Server(stack, folder, voicebot_settings)
            try:
                ready_s = server.wait_ready()
                result = asyncio.run(call(stack, server.base, script, args.quiet_s, token, progress))
            finally:
                server.stop()
            text = server.log.read_text(errors="replace")
            servers[stack] = {"ready_s": round(ready_s, 2), "log_notes": log_notes(stack, text),
                              "log_tail": text.splitlines()[-15:] if result.error else None}
            results.append(result)
            if result.error:
                tqdm.write(f"{stack}: {result.error}")
    report: dict[str, Any] = {
        "benchmark": "webrtc_latency",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": machine(load_before),
        "versions": versions(),
        "method": {"measure": "caller's last voiced sample sent -> bot's first voiced sample received, at the caller",
                   "voiced_threshold": VOICED, "quiet_s": args.quiet_s, "reply_timeout_s": REPLY_TIMEOUT_S,
                   "audio": "Piper en_US-joe-medium, deterministic, 48 kHz mono, Opus over aiortc",
                   "network": "veth pair in a private network namespace (198.18.0.0/24)",
                   "stats": "over turns with a reply where the bot was silent while the caller spoke; "
                            f"percentiles interpolate linearly (p99 of {len(script)} turns is near the maximum)"},
        "configuration": {"voicebot": {"settings": {k: v for k, v in voicebot_settings.items()
                                                    if k not in ("api_tokens", "records_db")},
                                       "pipeline": "voicebot serve defaults plus settings (see voicebot/config.py)"},
                          "pipecat": next((r.server_config for r in results if r.stack == "pipecat"), None)},
        "script": [{"text": text, "reply_kind": kind} for text, kind in lines],
        "utterances": {u.text: {"voiced_s": round(u.voiced_s, 3), "samples": len(u.pcm)} for u in utterances.values()},
        "servers": servers,
        "calls": [{**{k: v for k, v in asdict(r).items() if k not in ("turns", "server_config")},
                   "turns": [asdict(t) for t in r.turns]} for r in results],
        "stats": {r.stack: stats(r) for r in results},
        "wall_s": None,
    }
    by = report["stats"]
    if "voicebot" in by and "pipecat" in by:
        report["ratio_voicebot_over_pipecat"] = {
            q: (round(by["voicebot"][f"{q}_s"] / by["pipecat"][f"{q}_s"], 3)
                if by["voicebot"][f"{q}_s"] and by["pipecat"][f"{q}_s"] else None) for q in ("p50", "p90")}
    report["wall_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    plot(results, out.with_suffix(".png"))
    print(table(report))
    print(f"{out} and {out.with_suffix('.png')} ({report['wall_s']} s)")
    return 1 if any(r.error for r in results) else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stacks", default="voicebot,pipecat", help="comma-separated, run in this order")
    p.add_argument("--turns", type=int, default=len(SCRIPT),
                   help=f"utterances per stack (the script has {len(SCRIPT)}; more repeat it)")
    p.add_argument("--quiet-s", type=float, default=1.2, help="the bot is done after this much silence")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a voicebot setting (YAML value), merged into its settings file; repeatable")
    p.add_argument("--out", default=str(RESULTS / "webrtc_latency.json"))
    p.add_argument("--logs", help="keep the servers' logs and settings in this folder (default: a temporary one)")
    args = p.parse_args()
    if os.environ.get(NS_ENV) is None:
        return in_namespace(sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
