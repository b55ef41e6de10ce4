"""WebRTC data channels: only the caller page's "dtmf" channel carries key presses.

A client written the way pipecat's SmallWebRTC / aiortc examples write one (``rtc_client.py``)
calls `voicebot serve` (the package's shared ``netns_server``) inside a private network
namespace: it speaks a request from a WAV file
while its "chat" channel sends ``ping: <ms>`` keep-alives every 200 ms and RTVI messages full of
digits; later it keys the account digits on the "dtmf" channel.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

from tests import api_token, netns
from tests.speech import piper
from voicebot.webrtc import keys_in

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("label, message, keys", [
    ("dtmf", "5", "5"), ("dtmf", "4567", "4567"), ("dtmf", "*#0", "*#0"), ("dtmf", "1" * 32, "1" * 32),
    ("dtmf", "1" * 33, ""), ("dtmf", "hello 12", ""), ("dtmf", " 5", ""), ("dtmf", "", ""), ("dtmf", b"5", ""),
    ("chat", "ping: 1796066553123", ""), ("chat", "5", ""), ("rtvi", '{"label":"rtvi-ai","type":"action"}', ""),
    ("DTMF", "5", ""),
])
def test_only_key_strings_on_the_dtmf_channel_are_keys(label: str, message: object, keys: str) -> None:
    assert keys_in(label, message) == keys


def _metric(metrics: str, channel_kind: str, outcome: str) -> float:
    pattern = (r'^voicebot_webrtc_datachannel_messages_total\{channel_kind="%s",outcome="%s"\} (\S+)$'
               % (channel_kind, outcome))
    found = re.search(pattern, metrics, re.M)
    return float(found.group(1)) if found else 0.0


def microphone_wav(path: Path) -> None:
    """3 s of silence (the greeting starts), the request, then silence for the rest of the call."""
    from voicebot.audio import resample
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    pcm, rate = piper(PiperEngine(str(model), str(model) + ".json"), "I would like to check my account balance, please.")
    second = b"\0" * (48000 * 2)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(second * 3 + resample(pcm, rate, 48000) + second * 150)


@pytest.mark.slow
@pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))
def test_chat_channel_chatter_is_not_keys_and_dtmf_keys_still_arrive(netns_server: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    wav = tmp_path / "mic.wav"
    microphone_wav(wav)
    client = subprocess.run(
        [*netns.exec_prefix(netns_server["ns"]), sys.executable, "-m", "tests.web.rtc_client",
         "--base", netns_server["base"], "--wav", str(wav), "--token", api_token.TOKEN, "--keys", "45,6,7"],
        capture_output=True, text=True, cwd=ROOT, timeout=420)
    server_output = netns_server["log"].read_text()
    assert client.returncode == 0, f"client: {client.stderr[-4000:]}\nserver: {server_output[-4000:]}"
    result = json.loads(client.stdout)
    record, sent = result["record"], result["sent"]
    caller = [t for t in record["turns"] if t["speaker"] == "caller"]
    assert record["channel"] == "webrtc"
    # the caller was heard, not drowned in key presses from the chat channel
    assert caller[0]["intent"] == "check_balance", caller
    assert "balance" in caller[0]["text"].lower()
    # the only key presses are the ones sent on the dtmf channel ("45", "6", "7"), in order
    assert [t["text"] for t in caller if t["text"].startswith("[DTMF")] == ["[DTMF 4]", "[DTMF 5]", "[DTMF 6]",
                                                                         "[DTMF 7]"], caller
    assert any("$2,450.75" in t["text"] for t in record["turns"] if t["speaker"] == "bot")
    # everything else was counted, not logged (counted during this call: the server may have had others)
    assert sent["chat"] >= 20, sent

    def counted(channel_kind: str, outcome: str) -> float:
        return (_metric(result["metrics"], channel_kind, outcome)
                - _metric(result["metrics_before"], channel_kind, outcome))

    assert counted("other", "ignored") >= sent["chat"] - 5  # a few may still be in flight
    assert counted("dtmf", "keys") == sent["dtmf_keys"] == 3
    assert counted("dtmf", "not_keys") == sent["dtmf_not_keys"] == 1
    assert "ping:" not in server_output and "rtvi" not in server_output
