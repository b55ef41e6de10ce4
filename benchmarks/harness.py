"""What the benchmarks that drive a real `voicebot serve` share: start it on free ports with a
settings file of its own, wait until it answers, sample its CPU and memory from /proc, and say
which machine and which packages the numbers came from.

The server runs as a subprocess so that its CPU time and RSS are its own (read from
/proc/<pid>), not mixed with the callers' that measure it.  Its settings are a YAML file written
here: the settings `voicebot serve` would load anyway (./voicebot.yaml in its working folder, else
the embedded sample contact centre) with the benchmark's overrides on top, so a run says exactly
which configuration it measured and two configurations can be compared (`--set key=value`).
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from voicebot.config import SAMPLE_SETTINGS, Settings  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PACKAGES = ("voicebot", "pipecat-ai", "faster-whisper", "ctranslate2", "piper-tts", "onnxruntime", "aiortc",
            "av", "numpy", "torch")


def free_port(kind: int) -> int:
    """A port nobody holds now (TCP or UDP on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs from the command line; each value is read as YAML (numbers, true,
    null, ``[a, b]``), so ``--set end_of_turn_s=0.25`` sets a float, not a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--set {item!r}: expected key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


def base_settings(cwd: Path) -> dict[str, Any]:
    """What `voicebot serve` started in ``cwd`` would load without --config."""
    path = cwd / "voicebot.yaml" if (cwd / "voicebot.yaml").exists() else SAMPLE_SETTINGS
    return yaml.safe_load(path.read_text()) or {}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident set size of a process, MiB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The host the numbers came from; the development machines are shared, so callers add the
    load average before and after a run."""
    return {"host": platform.node(), "cpu": platform.machine(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version()}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def phone_speech(texts: list[str]) -> list[bytes]:
    """Each text in the project's Piper voice through an 8 kHz G.711 phone line (the tests'
    speech helpers), as 8 kHz 16-bit PCM.  Deterministic (no sampling noise), so every run says
    the same audio.  Piper loads here, in the benchmark's process, and only for the benchmarks
    whose callers speak (hence the imports in the function)."""
    from tests.speech import phone_line, piper
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    engine = PiperEngine(str(model), str(model) + ".json")
    out = []
    for text in texts:
        pcm, rate = phone_line(*piper(engine, text))
        assert rate == 8000, rate
        out.append(pcm)
    return out


class ServerDidNotStart(Exception):
    """`voicebot serve` exited or did not answer /healthz in time; carries its log's tail."""

    def __init__(self, log_tail: str) -> None:
        super().__init__("voicebot serve did not start")
        self.log_tail = log_tail


@dataclass
class Server:
    """A `voicebot serve` subprocess on free ports with its own settings file and database in
    ``work`` (a temporary folder unless given).  Use as a context manager: it starts, waits for
    /healthz, and is stopped (terminate, then kill) on the way out.

    ``overrides`` go into the settings file; a VOICEBOT_* variable for one of those keys is
    dropped from the server's environment, so the file says what ran.  ``env`` adds variables
    (other VOICEBOT_* settings the caller wants through the environment, HF_HUB_OFFLINE...).
    ``log``: keep the server's output in work/server.log (else it is discarded)."""

    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    work: Path | None = None
    log: bool = True
    ready_timeout_s: float = 180.0
    cwd: Path | None = None
    http_port: int = 0
    sip_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _own_work: bool = False
    _log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def db(self) -> Path:
        assert self.work is not None
        return self.work / "calls.sqlite3"

    @property
    def log_path(self) -> Path:
        assert self.work is not None
        return self.work / "server.log"

    @property
    def settings_path(self) -> Path:
        assert self.work is not None
        return self.work / "settings.yaml"

    @property
    def sip_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.sip_port)

    def settings(self) -> dict[str, Any]:
        """The settings file's content, validated the way the server will (a bad --set fails
        here, with pydantic's message, before any model loads)."""
        data = {**base_settings(self.cwd or Path.cwd()), **self.overrides}
        Settings.model_validate(data)
        return data

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def start(self) -> "Server":
        if self.work is None:
            self.work, self._own_work = Path(tempfile.mkdtemp(prefix="voicebot-bench-")), True
        self.work.mkdir(parents=True, exist_ok=True)
        self.settings_path.write_text(yaml.safe_dump(self.settings(), sort_keys=False))
        self.http_port, self.sip_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("VOICEBOT_") and k.removeprefix("VOICEBOT_").lower() in self.overrides)}
        env.update({"HF_HUB_OFFLINE": "1", **self.env})
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log:
            self._log_file = out = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voicebot.cli", "serve", "--config", str(self.settings_path),
             "--port", str(self.http_port), "--sip-port", str(self.sip_port), "--db", str(self.db)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2)
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log_tail()
                    self.stop()
                    raise ServerDidNotStart(tail) from None
                time.sleep(0.5)

    def stop(self, keep_work: bool = False) -> None:
        """Terminate (kill after 30 s); remove the work folder if this made it and ``keep_work``
        is false."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_work and not keep_work and self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Sampler(threading.Thread):
    """The server's RSS (MiB) and CPU time every ``every`` seconds, from /proc; ``t_s`` counts
    from the sampler's creation.  ``mark()`` returns the samples since a given time."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[dict[str, float]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss, cpu = rss_mib(self.pid), cpu_seconds(self.pid)
            except (OSError, IndexError, ValueError):
                return
            self.samples.append({"t_s": round(time.monotonic() - self.t0, 1), "rss_mib": round(rss, 1),
                                 "cpu_s": round(cpu, 2)})
            self.stop.wait(self.every)

    def since(self, t_s: float) -> list[dict[str, float]]:
        return [s for s in list(self.samples) if s["t_s"] >= t_s]

    def now_s(self) -> float:
        return time.monotonic() - self.t0
