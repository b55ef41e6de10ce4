"""Model roles resolve to local files; a missing one says what to do."""

import pytest

from voicebot import modelstore


def test_missing_model_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEBOT_MODEL_ASR", "/nonexistent/model")
    with pytest.raises(modelstore.ModelMissing, match="VOICEBOT_MODEL_ASR"):
        modelstore.resolve("asr")
    monkeypatch.delenv("VOICEBOT_MODEL_ASR")
    monkeypatch.setattr(modelstore, "CACHE", modelstore.CACHE / "nowhere")
    with pytest.raises(modelstore.ModelMissing, match="voicebot models prepare"):
        modelstore.resolve("asr_base")


def test_every_role_resolves_to_existing_files() -> None:
    for role in modelstore.manifest():
        if role == "asr_base" and not (modelstore.CACHE / "asr_base" / "model.bin").exists():
            continue  # joined by `voicebot models prepare`, tested in test_cli
        assert modelstore.resolve(role).exists(), role
