"""What the contact centre's end-to-end tests share: a real `voicebot serve` on a settings file
of the test's own (on loopback, or inside a private network namespace), its HTTP API with the
tests' API token, a baresip caller driven over ctrl_tcp, tones and speech for the callers and
agents to play, and a tone finder for what they heard.

The tools are real and required: a missing sipp, baresip or chromium fails the test that needs
it (``require``), it never skips."""

from __future__ import annotations

import ctypes
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml

from tests import api_token
from tests.sip.harness import free_port, quiet_port

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sip" / "scenarios"
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def require(*tools: str) -> dict[str, str]:
    """The path of each tool, or the test fails (these tests never skip: `make test-deps`
    installs sip-tester, baresip-core and chromium)."""
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if "baresip" in tools and not BARESIP_MODULES.exists():
        missing.append(f"baresip modules ({BARESIP_MODULES})")
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make test-deps` (sip-tester, baresip-core, chromium)")
    return {tool: str(path) for tool, path in found.items()}


# ----------------------------------------------------------------------------- network namespaces


_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns: str | None, fn: Callable[[], T]) -> T:
    """Run ``fn`` on a thread that has joined network namespace ``ns`` (None: here), so the
    sockets it opens (HTTP requests, a ctrl_tcp connection) live there; a socket keeps its
    namespace wherever it is used afterwards."""
    if ns is None:
        return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            with open(f"/var/run/netns/{ns}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}) failed")
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# ----------------------------------------------------------------------------- voicebot serve


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    """A voicebot.yaml for one test; the tests' API token is always in it."""
    path.write_text(yaml.safe_dump({"api_tokens": json.loads(api_token.ENV["VOICEBOT_API_TOKENS"]), **settings},
                                   sort_keys=False))
    return path


class Api:
    """The server's HTTP API as a tool would use it: with the tests' admin token, or with no
    credentials at all (``token=False``).  Inside a namespace when ``ns`` is given."""

    def __init__(self, base: str, ns: str | None = None) -> None:
        self.base = base
        self.ns = ns

    def request(self, method: str, path_or_url: str, body: Any = None, token: bool = True,
                timeout: float = 10) -> tuple[int, Any]:
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        headers = dict(api_token.HEADERS) if token else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)

        def go() -> tuple[int, Any]:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as r:
                    return r.status, _json(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, _json(exc.read())

        return in_netns(self.ns, go)

    def get(self, path: str, token: bool = True) -> Any:
        status, body = self.request("GET", path, token=token)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def post(self, path: str, body: Any) -> Any:
        status, reply = self.request("POST", path, body)
        assert status == 200, f"POST {path}: {status} {reply}"
        return reply

    def call(self, call_id: str) -> dict[str, Any]:
        return self.get(f"/api/calls/{call_id}")

    def calls(self) -> list[dict[str, Any]]:
        return self.get("/api/calls")

    def queue_log(self) -> list[dict[str, Any]]:
        return self.get("/api/queue_log")

    def wait_for(self, what: str, check: Callable[[], T], timeout: float, every: float = 0.25) -> T:
        """``check()`` until it returns something true; fails with ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Server:
    """`voicebot serve --config ...` in a subprocess (in namespace ``ns`` when given); its
    output goes to a log file, so a chatty server never blocks on a full pipe."""

    def __init__(self, folder: Path, config: Path, host: str, http_port: int, sip_port: int,
                 ns: str | None = None) -> None:
        self.folder = folder
        self.log_path = folder / "voicebot.log"
        self.base = f"http://{host}:{http_port}"
        self.sip_port = sip_port
        self.api = Api(self.base, ns)
        prefix = ["ip", "netns", "exec", ns] if ns else []
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "voicebot.cli", "serve", "--config", str(config), "--host", host,
             "--port", str(http_port), "--sip-port", str(sip_port), "--db", str(folder / "calls.sqlite3")],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**_env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, timeout: float = 150) -> float:
        """Seconds until /healthz answered (the server loads its models first)."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            try:
                status, _ = self.api.request("GET", "/healthz", token=False, timeout=2)
                if status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            assert self.proc.poll() is None, f"voicebot serve exited {self.proc.returncode}:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"voicebot serve never came up:\n{self.output()[-4000:]}"
            time.sleep(0.5)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@contextmanager
def server(folder: Path, settings: dict[str, Any], host: str, http_port: int, sip_port: int,
           ns: str | None = None) -> Iterator[Server]:
    config = write_settings(folder / "voicebot.yaml", settings)
    srv = Server(folder, config, host, http_port, sip_port, ns)
    try:
        yield srv
    finally:
        srv.stop()


def _env() -> dict[str, str]:
    # the settings file is the whole truth: no VOICEBOT_* from the shell running the tests
    return {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}


# ----------------------------------------------------------------------------- audio


def tone(hz: float, seconds: float, rate: int, level: float = 0.3) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    ramp = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)  # no clicks at either end
    return (level * ramp * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16).tobytes()


def silence(seconds: float, rate: int) -> bytes:
    return bytes(int(rate * seconds) * 2)


def write_wav(path: Path, pcm: bytes, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768, w.getframerate()


@functools.lru_cache(maxsize=1)
def _voice() -> Any:
    """The Piper voice the parties speak with, loaded once per process."""
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    return PiperEngine(str(model), str(model) + ".json")


def speech(text: str, rate: int, phone: bool = False) -> bytes:
    """Piper saying ``text`` at ``rate``; through a G.711 phone line first with ``phone``."""
    from tests.speech import phone_line, piper
    from voicebot.audio import resample

    pcm, native = piper(_voice(), text)
    if phone:
        pcm, native = phone_line(pcm, native)
    return resample(pcm, native, rate)


def tone_seconds(samples: np.ndarray, rate: int, hz: float, tolerance: float = 30.0, min_run: int = 3) -> float:
    """Seconds of a steady tone at ``hz``: 100 ms windows whose strongest frequency is ``hz``,
    counted only in runs of at least ``min_run`` windows in a row (a vowel of speech can peak
    at any frequency for a window or two; a tone someone plays lasts)."""
    window = rate // 10
    freqs = np.fft.rfftfreq(window, 1 / rate)
    hits = []
    for start in range(0, len(samples) - window, window):
        chunk = samples[start:start + window]
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(window)))
        hits.append(float(np.sqrt(np.mean(chunk ** 2))) >= 0.02
                    and abs(float(freqs[spectrum.argmax()]) - hz) <= tolerance)
    runs, run = [], 0
    for hit in [*hits, False]:
        if hit:
            run += 1
        else:
            runs.append(run)
            run = 0
    return sum(r for r in runs if r >= min_run) * window / rate


def loud_seconds(samples: np.ndarray, rate: int, level: float = 0.01) -> float:
    window = rate // 10
    return sum(window / rate for start in range(0, len(samples) - window, window)
               if float(np.sqrt(np.mean(samples[start:start + window] ** 2))) >= level)


# ----------------------------------------------------------------------------- baresip


class Baresip:
    """Debian's baresip 1.0, headless, as a caller: dials, plays a WAV as its microphone (the
    WAV must outlast the call: aufile ending closes the call), records what it hears, and takes
    ctrl_tcp commands (``sndcode`` keys, ``ausrc`` another WAV, ``hangup``).  ``ns``: run inside
    that network namespace, bound to ``host`` there.  ``user``: the From user voicebot sees as the
    caller ID (a number, for a callback); ``sip_port``/``ctrl_port``: several callers at once in
    one namespace each need their own."""

    def __init__(self, folder: Path, source_wav: Path, host: str = "127.0.0.1", ns: str | None = None,
                 user: str = "caller", sip_port: int | None = None, ctrl_port: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rec").mkdir(exist_ok=True)
        self.folder, self.host, self.ns = folder, host, ns
        # a fresh namespace has every port free
        self.ctrl_port = ctrl_port or (4444 if ns else quiet_port())
        sip_port = sip_port or (5070 if ns else quiet_port(socket.SOCK_DGRAM))
        (folder / "config").write_text("\n".join([
            f"sip_listen {host}:{sip_port}", "audio_player aufile,/dev/null",
            f"audio_source aufile,{source_wav}", "audio_alert aufile,/dev/null",
            f"module_path {BARESIP_MODULES}", "module g711.so", "module aufile.so", "module sndfile.so",
            "module_app account.so", "module_app menu.so", "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}", f"snd_path {folder / 'rec'}", ""]))
        (folder / "accounts").write_text(f"<sip:{user}@{host}>;regint=0\n")
        self.log_path = folder / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._log: Any = None

    def dial(self, uri: str, limit_s: int = 120) -> None:
        prefix = ["ip", "netns", "exec", self.ns] if self.ns else []
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([*prefix, shutil.which("baresip") or "baresip", "-f", str(self.folder),
                                      "-n", self.host, "-e", f"/dial {uri}", "-t", str(limit_s)],
                                     stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.folder)

    def command(self, command: str, params: str = "") -> dict[str, Any]:
        if self._ctrl is None:
            deadline = time.monotonic() + 15
            while True:
                try:
                    self._ctrl = in_netns(self.ns, lambda: socket.create_connection(("127.0.0.1", self.ctrl_port),
                                                                                       timeout=5))
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"baresip's ctrl_tcp never listened:\n{self.output()}"
                    time.sleep(0.2)
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._ctrl.sendall(str(len(body)).encode() + b":" + body + b",")
        while True:  # skip events (call progress) until our command's response
            length = b""
            while not length.endswith(b":"):
                byte = self._ctrl.recv(1)
                assert byte, f"baresip closed ctrl_tcp:\n{self.output()}"
                length += byte
            data = b""
            while len(data) < int(length[:-1]) + 1:
                data += self._ctrl.recv(int(length[:-1]) + 1 - len(data))
            message = json.loads(data[:-1])
            if message.get("response"):
                return message

    def send_digits(self, digits: str) -> None:
        reply = self.command("sndcode", digits)
        assert reply.get("ok"), reply

    def play(self, wav: Path) -> None:
        """Switch the microphone to another WAV, mid-call."""
        reply = self.command("ausrc", f"aufile,{wav}")
        assert reply.get("ok"), reply

    def hang_up(self) -> None:
        reply = self.command("hangup")
        assert reply.get("ok"), reply

    def output(self) -> str:
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace").replace("\r", "\n") if self.log_path.exists() else ""

    def wait_output(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"baresip never printed {text!r}:\n{self.output()[-3000:]}"
            time.sleep(0.2)
        return self.output()

    def stop(self) -> str:
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.output()

    def heard(self) -> tuple[np.ndarray, int]:
        """What the caller heard (baresip's decoded recording of its one call)."""
        recordings = sorted((self.folder / "rec").glob("*-dec.wav"))
        assert len(recordings) == 1, recordings
        return read_wav(recordings[0])


def sipp_phone(folder: Path, scenario: str, port: int, *args: str, timeout: int = 60) -> subprocess.Popen[str]:
    """A SIPp UAS (an agent's phone) on loopback ``port`` for one call, run in ``folder`` (its
    audio files, its ``<scenario>_<pid>_messages.log``)."""
    return subprocess.Popen([shutil.which("sipp") or "sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1",
                             "-p", str(port), "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "1",
                             "-timeout", f"{timeout}s", "-nostdin", "-trace_err", "-trace_msg", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)


def sipp_messages(folder: Path, phone: subprocess.Popen[str]) -> str:
    return next(folder.glob(f"*_{phone.pid}_messages.log")).read_text(errors="replace")


@contextmanager
def explained(*parties: Any) -> Iterator[None]:
    """On a failure, print what each party (a Server, a Baresip) logged, then fail."""
    try:
        yield
    except BaseException:
        for party in parties:
            print(f"--- {type(party).__name__} ---\n{party.output()[-5000:]}")
        raise


def stop_phone(phone: subprocess.Popen[str]) -> None:
    """A SIPp phone still running after a failure is killed, not left to its timeout."""
    if phone.poll() is None:
        phone.kill()
        phone.wait(timeout=10)


def state_path(record: dict[str, Any]) -> list[str]:
    """The states a call's record went through, in order (it starts in ivr)."""
    return ["ivr"] + [e["data"]["state"] for e in record["events"] if e["kind"] == "state"]


def queue_events(api: Api, call_id: str) -> list[tuple[str, str]]:
    """(event, agent) of the queue log lines for one call, from GET /api/queue_log."""
    return [(e["event"], e["agent"]) for e in api.queue_log() if e["call_id"] == call_id]


# The wallboard's figure of callers waiting in the queue general.
WAITING = '[data-queue="general"] [data-figure="waiting"]'
# Stamps (on the page's clock) the moment the waiting figure first reads "1".
WATCH_WAITING_JS = """() => {
  const value = document.querySelector('%s .value');
  window.__shown = null;
  new MutationObserver(() => {
    if (value.textContent === "1" && window.__shown === null) window.__shown = Date.now();
  }).observe(value, {childList: true, characterData: true, subtree: true});
}""" % WAITING


# --------------------------------------------------------------------------- a browser party

# Counts, every 100 ms, the frames in which each of ``freqs`` stands out in the page's remote
# audio (within 15 dB of the loudest bin and above -60 dBFS), with the wall clock of each.
TONES_JS = """(freqs) => {
  const audio = document.getElementById("remote-audio");
  if (!audio.srcObject) return false;
  if (window.__tones) return true;
  const ctx = new AudioContext();
  ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const hzPerBin = ctx.sampleRate / analyser.fftSize;
  const tones = window.__tones = {loud: []};
  freqs.forEach((hz) => { tones[hz] = []; });
  setInterval(() => {
    analyser.getFloatFrequencyData(bins);
    let top = -Infinity;
    for (let i = 1; i < bins.length; i++) top = Math.max(top, bins[i]);
    if (top < -60) return;
    const now = Date.now() / 1000;
    tones.loud.push(now);
    freqs.forEach((hz) => {
      let best = -Infinity;
      for (let i = Math.floor((hz - 25) / hzPerBin); i <= Math.ceil((hz + 25) / hzPerBin); i++) best = Math.max(best, bins[i]);
      if (best > -60 && best > top - 15) tones[hz].push(now);
    });
  }, 100);
  return true;
}"""


def pulses(hz: float, rate: int) -> bytes:
    """A browser microphone's tone: 1.2 s on, 0.8 s off (Chromium's noise suppression fades out
    a tone that never stops, as it would a fan)."""
    return (tone(hz, 1.2, rate, 0.2) + silence(0.8, rate)) * 5


def heard_between(page, hz: float, start: float, end: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds of ``hz`` the page heard between two wall-clock times."""
    times = page.evaluate(f"window.__tones[{hz!r}] || window.__tones['{int(hz)}']")
    return sum(1 for t in times if start <= t <= end) / 10


def login(page, base: str, path: str, user: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base + path)
    page.fill("#login-user", user)
    page.fill("#login-password", "demo")
    page.click("#login-submit")
