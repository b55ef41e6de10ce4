from pathlib import Path

import pytest

from voicebot.config import SettingsError, load_settings


def test_defaults_file_env_and_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(None).port == 8080
    cfg = tmp_path / "voicebot.yaml"
    cfg.write_text("port: 9000\nasr_model: asr_base\n")
    monkeypatch.setenv("VOICEBOT_VAD", "webrtc")
    s = load_settings(cfg, port=9100)
    assert (s.port, s.asr_model, s.vad) == (9100, "asr_base", "webrtc")


@pytest.mark.parametrize("text", ["port: not-a-number\n", "unknown_setting: 1\n", "- a list\n", "port: [\n"])
def test_bad_settings_are_clear_errors(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "voicebot.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError):
        load_settings(cfg)
