"""baresip as a second, independent SIP client: a call with speech from a WAV, the bot's audio
recorded on the client side, and the bot hanging up (BYE from voicebot's side)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.speech import piper

pytestmark = pytest.mark.slow
BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(BARESIP is None or not MODULES.exists(), reason="baresip-core is not installed; make test installs it")
def test_baresip_caller_says_goodbye_and_the_bot_hangs_up(tmp_path: Path) -> None:
    from voicebot.audio import resample
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine
    from voicebot.records.store import RecordStore

    model = resolve("tts")
    pcm, rate = piper(PiperEngine(str(model), str(model) + ".json"), "No thanks, goodbye.")
    with wave.open(str(tmp_path / "say.wav"), "wb") as w:  # listen 3 s, speak, then stay quiet
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0" * 48000 + resample(pcm, rate, 8000) + b"\0" * 8000 * 2 * 40)
    (tmp_path / "rec").mkdir()
    (tmp_path / "config").write_text("\n".join([
        f"sip_listen 127.0.0.1:{free_port(socket.SOCK_DGRAM)}", "audio_player aufile,/dev/null",
        f"audio_source aufile,{tmp_path / 'say.wav'}", "audio_alert aufile,/dev/null",
        f"module_path {MODULES}", "module g711.so", "module aufile.so", "module sndfile.so",
        "module_app account.so", "module_app menu.so", f"snd_path {tmp_path / 'rec'}", ""]))
    (tmp_path / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0\n")

    http, sip = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    db = tmp_path / "calls.sqlite3"
    server = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "serve", "--port", str(http), "--sip-port", str(sip),
                               "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "VOICEBOT_SIP_TCP": "false"})
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        client = subprocess.run([BARESIP, "-f", str(tmp_path), "-n", "127.0.0.1", "-e", f"/dial sip:bank@127.0.0.1:{sip}",
                                 "-t", "20"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=20)
    log = client.stdout + client.stderr
    assert "Call established" in log, log[-2000:]
    ended = re.search(r"terminated \(duration: (\d+) secs\)", log)
    # the bot hung up: the call ended well before baresip's own 20 s limit
    assert ended and int(ended.group(1)) < 18, log[-1500:]
    store = RecordStore(db)
    record = store.get_call(store.list_calls()[0]["id"])
    caller = [t for t in record["turns"] if t["speaker"] == "caller"]
    assert record["channel"] == "sip" and caller and caller[0]["intent"] == "goodbye", caller
    assert record["outcome"] == "completed" and record["ended_at"] is not None
    # what baresip heard: the bot's greeting and goodbye, decoded on the client side
    heard = next((tmp_path / "rec").glob("*-dec.wav"))
    with wave.open(str(heard)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    assert float(np.sqrt(np.mean(samples ** 2))) > 0.01
