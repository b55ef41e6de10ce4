"""What the end-to-end SIP tests share: a real `voicebot serve` in a subprocess, free ports,
the record API, SIPp runs, and baresip driven over its ctrl_tcp interface; and for in-process
tests, a SIP phone made of raw UDP sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tests import api_token

from voicebot.sip.dialog import response_to
from voicebot.sip.message import SipRequest, SipResponse, parse

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "sip" / "scenarios"
DTMF_PCAPS = Path("/usr/share/sip-tester")
SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
HAVE_BARESIP = BARESIP is not None and BARESIP_MODULES.exists()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quiet_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free port below the ephemeral range (32768+ on Linux), for a child process that binds
    it a moment later: an ephemeral port found free can be handed to another socket (the
    server's RTP, SIPp's) before the child binds it; these ports are never handed out."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20000, 30999)
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below the ephemeral range")


def free_port_both() -> int:
    """A port free for both UDP and TCP (SIP listens on both)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


@contextmanager
def voicebot_server(tmp: Path, env: dict[str, str]) -> Iterator[dict]:
    """`voicebot serve` on free ports with its own database; yields where to reach it."""
    http, sip = free_port(), free_port_both()
    proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--port", str(http), "--sip-port", str(sip),
                             "--db", str(tmp / "calls.sqlite3")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **api_token.ENV, **env})
    base = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.5)
        yield {"http": base, "sip": sip, "tmp": tmp, "db": tmp / "calls.sqlite3"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def calls(base: str) -> list[dict]:
    with urllib.request.urlopen(urllib.request.Request(base + "/api/calls", headers=api_token.HEADERS), timeout=5) as r:
        return json.loads(r.read())


def record(base: str, call_id: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(f"{base}/api/calls/{call_id}", headers=api_token.HEADERS),
                                timeout=5) as r:
        return json.loads(r.read())


def new_calls(base: str, before: set[str]) -> list[dict]:
    return [c for c in calls(base) if c["id"] not in before]


def sipp(server: dict, scenario: str, *args: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
    """A SIPp client call to the server, run from the server's folder (pcaps, audio files)."""
    assert SIPP is not None
    return subprocess.run([SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(free_port(socket.SOCK_DGRAM)),
                           "-m", "1", "-timeout", f"{timeout}s", "-nostdin", "-trace_err", *args,
                           f"127.0.0.1:{server['sip']}"], capture_output=True, text=True, timeout=timeout + 30,
                          cwd=server["tmp"])


def sipp_phone(folder: Path, scenario: str, port: int, timeout: int = 60) -> subprocess.Popen[str]:
    """A SIPp UAS (an agent's phone) listening on ``port`` for one call; what it received is
    in ``<scenario>_<pid>_messages.log`` in ``folder``."""
    assert SIPP is not None
    return subprocess.Popen([SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port),
                             "-mi", "127.0.0.1", "-mp", str(free_port(socket.SOCK_DGRAM)), "-m", "1",
                             "-timeout", f"{timeout}s", "-nostdin", "-trace_err", "-trace_msg"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


class Baresip:
    """Debian's baresip 1.0, headless: dials, plays a WAV as its microphone, records what it
    hears, and takes commands (``sndcode`` for DTMF) over ctrl_tcp's netstring JSON.  It logs to
    ``baresip.log`` in its folder; ``wait`` quits it as soon as its calls are over (its own
    ``-t`` limit is only the backstop for a call that never ends)."""

    def __init__(self, folder: Path, source_wav: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rec").mkdir(exist_ok=True)
        self.folder = folder
        self.ctrl_port = quiet_port()
        (folder / "config").write_text("\n".join([
            f"sip_listen 127.0.0.1:{quiet_port(socket.SOCK_DGRAM)}", "audio_player aufile,/dev/null",
            f"audio_source aufile,{source_wav}", "audio_alert aufile,/dev/null",
            f"module_path {BARESIP_MODULES}", "module g711.so", "module aufile.so", "module sndfile.so",
            "module_app account.so", "module_app menu.so", "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}", f"snd_path {folder / 'rec'}", ""]))
        (folder / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0\n")
        self.log_path = folder / "baresip.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None

    def dial(self, uri: str, limit_s: int = 40) -> None:
        assert BARESIP is not None
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen([BARESIP, "-f", str(self.folder), "-n", "127.0.0.1", "-e", f"/dial {uri}",
                                          "-t", str(limit_s)], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.folder)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace").replace("\r", "\n") if self.log_path.exists() else ""

    def command_socket(self) -> socket.socket:
        """The ctrl_tcp connection, made on first use (baresip may still be starting)."""
        if self._ctrl is None:
            deadline = time.monotonic() + 15
            while True:
                try:
                    self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
                    break
                except OSError:
                    exited = self.proc.poll() if self.proc is not None else None
                    assert exited is None and time.monotonic() < deadline, (
                        f"baresip's ctrl_tcp never listened (baresip exit status {exited}):\n{self.output()[-3000:]}")
                    time.sleep(0.2)
        return self._ctrl

    def command(self, command: str, params: str = "") -> dict:
        ctrl = self.command_socket()
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        ctrl.sendall(str(len(body)).encode() + b":" + body + b",")
        while True:  # skip events (call progress, RTCP) until our command's response
            length = b""
            while not length.endswith(b":"):
                length += ctrl.recv(1)
            data = b""
            while len(data) < int(length[:-1]) + 1:
                data += ctrl.recv(int(length[:-1]) + 1 - len(data))
            message = json.loads(data[:-1])
            if message.get("response"):
                return message

    def send_digits(self, digits: str) -> None:
        reply = self.command("sndcode", digits)
        assert reply.get("ok"), reply

    def wait(self, calls: int = 1, timeout: float = 90) -> str:
        """Its log, once ``calls`` calls have ended (a REFER it follows is a second call) and it
        has quit; or once it quits by itself (its ``-t`` limit)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and self.output().count("terminated (duration") < calls:
            assert time.monotonic() < deadline, f"baresip's calls did not end:\n{self.output()[-3000:]}"
            time.sleep(0.2)
        if self.proc.poll() is None:
            body = json.dumps({"command": "quit", "params": "", "token": "quit"}).encode()
            with contextlib.suppress(OSError):  # it may quit before it answers
                self.command_socket().sendall(str(len(body)).encode() + b":" + body + b",")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=10)
        if self._ctrl is not None:
            self._ctrl.close()
        return self.output()

    def heard(self, call: int = 0) -> tuple[np.ndarray, int]:
        """What the caller heard on its ``call``-th call (baresip's decoded recording; a
        transfer it follows is a second call), as floats."""
        path = sorted((self.folder / "rec").glob("*-dec.wav"))[call]
        with wave.open(str(path)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768, w.getframerate()


def tone_seconds(samples: np.ndarray, rate: int, hz: float, tolerance: float = 30.0) -> float:
    """Seconds of audio whose strongest frequency is ``hz`` (a tone someone played)."""
    seconds = 0.0
    window = rate // 10
    for start in range(0, len(samples) - window, window):
        chunk = samples[start:start + window]
        if float(np.sqrt(np.mean(chunk ** 2))) < 0.02:
            continue
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(window)))
        if abs(float(np.fft.rfftfreq(window, 1 / rate)[spectrum.argmax()]) - hz) <= tolerance:
            seconds += window / rate
    return seconds


def phone_messages(folder: Path, phone: subprocess.Popen[str]) -> str:
    """The SIP messages a SIPp phone saw (its -trace_msg log)."""
    return next(folder.glob(f"*_{phone.pid}_messages.log")).read_text(errors="replace")


class RawPhone:
    """A SIP phone made of two UDP sockets (signalling, media) for in-process tests: it sends
    what the test says, answers as told, and keeps every message it got."""

    def __init__(self) -> None:
        self.sock, self.media = _udp(), _udp()
        self.port = self.sock.getsockname()[1]
        self.media_port = self.media.getsockname()[1]
        self.requests: list[SipRequest] = []
        self.responses: list[SipResponse] = []

    async def next(self, method: str, timeout: float = 5.0) -> tuple[SipRequest, tuple[str, int]]:
        """The next request of ``method`` (others are kept, and skipped)."""
        message, addr = await self._next(lambda m: isinstance(m, SipRequest) and m.method == method, timeout)
        assert isinstance(message, SipRequest)
        return message, addr

    async def response(self, method: str, timeout: float = 5.0) -> SipResponse:
        """The next final response to a request of ``method``."""
        message, _ = await self._next(lambda m: isinstance(m, SipResponse) and m.cseq[1] == method and m.status >= 200,
                                      timeout)
        assert isinstance(message, SipResponse)
        return message

    def answer(self, request: SipRequest, status: int, addr: tuple[str, int], tag: str = "phone",
               sdp: bool = False) -> None:
        """Respond; a 2xx to an INVITE with a Contact and, with ``sdp``, media on ``media_port``."""
        body = self.sdp().encode() if sdp else b""
        response = response_to(request, status, to_tag=tag, body=body,
                               content_type="application/sdp" if sdp else None)
        if 200 <= status < 300 and request.method == "INVITE":
            response.headers.add("Contact", f"<sip:phone@127.0.0.1:{self.port}>")
        self.sock.sendto(response.encode(), addr)

    def send(self, method: str, addr: tuple[str, int], call_id: str, from_: str, to: str, cseq: int,
             body: bytes = b"", extra: list[tuple[str, str]] | None = None) -> None:
        """A request in an existing dialog: ``from_`` is our side (tag included), ``to`` theirs."""
        request = SipRequest(method, f"sip:voicebot@{addr[0]}:{addr[1]}")
        request.headers.add("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(6)}")
        for name, value in [("Max-Forwards", "70"), ("From", from_), ("To", to), ("Call-ID", call_id),
                            ("CSeq", f"{cseq} {method}"), *(extra or [])]:
            request.headers.add(name, value)
        request.body = body
        self.sock.sendto(request.encode(), addr)

    def sdp(self) -> str:
        return (f"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {self.media_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")

    def media_packets(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.media.recv(2048))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()
        self.media.close()

    async def _next(self, wanted, timeout: float):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                continue
            message = parse(data)
            (self.requests if isinstance(message, SipRequest) else self.responses).append(message)  # type: ignore[arg-type]
            if wanted(message):
                return message, addr
        raise AssertionError(f"nothing wanted reached the phone; got {[r.method for r in self.requests]} and "
                             f"{[(r.status, r.cseq[1]) for r in self.responses]}")


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock
