"""baresip as a second, independent SIP client: speech from a WAV, DTMF sent with ctrl_tcp's
`sndcode`, the bot's audio recorded on the client side, and the bot hanging up (BYE from
voicebot's side), on the package's shared ``sip_server``."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sip.harness import HAVE_BARESIP, Baresip, new_calls, record, write_wav
from tests.speech import piper

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAVE_BARESIP, reason="baresip-core is not installed; make test installs it")]


def test_baresip_caller_speaks_keys_digits_and_the_bot_hangs_up(sip_server: dict[str, Any], tmp_path: Path) -> None:
    from voicebot.audio import resample
    from voicebot.modelstore import resolve
    from voicebot.pipeline.tts import PiperEngine

    model = resolve("tts")
    pcm, rate = piper(PiperEngine(str(model), str(model) + ".json"), "What's my balance?")
    # listen 3 s (the greeting), ask, then stay quiet: the digits go by DTMF
    write_wav(tmp_path / "say.wav", b"\0" * 48000 + resample(pcm, rate, 8000) + b"\0" * 8000 * 2 * 60)
    http = sip_server["http"]
    before = {c["id"] for c in new_calls(http, set())}
    phone = Baresip(tmp_path / "baresip", tmp_path / "say.wav")
    phone.dial(f"sip:bank@127.0.0.1:{sip_server['sip']}", limit_s=45)
    deadline = time.monotonic() + 20
    while not [t for c in new_calls(http, before) for t in record(http, c["id"])["turns"]
               if t["speaker"] == "bot" and "account number" in t["text"]]:
        assert time.monotonic() < deadline, "the bot never asked for the account number"
        time.sleep(0.3)
    phone.send_digits("4567")
    time.sleep(9)  # the balance, then "anything else?"
    phone.send_digits("#")
    log = phone.wait()
    new = new_calls(http, before)
    assert len(new) == 1, new
    rec = record(http, new[0]["id"])
    assert "Call established" in log, log[-2000:]
    ended = re.search(r"terminated \(duration: (\d+) secs\)", log)
    assert ended and int(ended.group(1)) < 40, log[-1500:]  # the bot hung up, long before baresip's own limit
    caller = [t for t in rec["turns"] if t["speaker"] == "caller"]
    assert rec["channel"] == "sip" and caller[0]["intent"] == "check_balance", caller
    assert [t["text"] for t in caller if t["text"].startswith("[DTMF")] == ["[DTMF 4]", "[DTMF 5]", "[DTMF 6]", "[DTMF 7]",
                                                                            "[DTMF #]"]
    assert any("$2,450.75" in t["text"] for t in rec["turns"] if t["speaker"] == "bot")
    assert rec["outcome"] == "completed" and rec["ended_at"] is not None
    sip_call = [e["data"] for e in rec["events"] if e["kind"] == "sip_call"]
    assert sip_call[0]["trunk"] == "allowed" and sip_call[0]["sip_call_id"]  # 127.0.0.0/8 is on the allow-list
    samples, _ = phone.heard()  # the bot's prompts, decoded on the client side
    assert float(np.sqrt(np.mean(samples ** 2))) > 0.01
