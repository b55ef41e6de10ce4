"""Fixed prompts' audio kept on disk: a second engine (a restart, another server) says them
without synthesising; a damaged file or another voice is never played."""

from __future__ import annotations

from pathlib import Path

from voicebot.modelstore import resolve
from voicebot.pipeline.tts import PiperEngine, PromptFiles

PROMPTS = ["Welcome to Example Bank.", "Goodbye. Thanks for calling.", "Your balance is {balance}."]


def engine(folder: Path) -> PiperEngine:
    path = resolve("tts")
    return PiperEngine(str(path), str(path) + ".json", prompt_dir=folder)


def test_a_second_engine_says_warmed_prompts_without_synthesising(tmp_path: Path) -> None:
    first = engine(tmp_path)
    assert first.warm(PROMPTS, (8000, 16000)) == 4  # the prompt with a field is not fixed
    assert first.stats.synth_seconds > 0 and len(list(tmp_path.glob("*.pcm"))) == 2
    second = engine(tmp_path)
    assert second.warm(PROMPTS, (8000, 16000)) == 4
    assert second.stats.synth_seconds == 0
    for text in PROMPTS[:2]:
        assert second.synthesize(text, 8000) == first.synthesize(text, 8000)


def test_a_damaged_file_is_synthesised_again(tmp_path: Path) -> None:
    engine(tmp_path).warm(PROMPTS[:1], (8000,))
    (cached,) = tmp_path.glob("*.pcm")
    cached.write_bytes(cached.read_bytes()[:-3])  # cut short mid-sentence
    again = engine(tmp_path)
    again.warm(PROMPTS[:1], (8000,))
    assert again.stats.synth_seconds > 0
    assert PromptFiles(tmp_path, str(resolve("tts"))).load(PROMPTS[0]) is not None  # and written whole again


def test_another_voice_does_not_find_these_prompts(tmp_path: Path) -> None:
    files = PromptFiles(tmp_path, str(resolve("tts")))
    files.save("Hello.", [b"\x01\x00" * 10])
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the same voice")
    assert PromptFiles(tmp_path, str(other)).load("Hello.") is None
    assert files.load("Hello.") == [b"\x01\x00" * 10]


def test_an_unwritable_folder_only_costs_time(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    tts = engine(blocked / "prompts")
    assert tts.warm(PROMPTS[:1], (8000,)) == 1 and tts.is_cached(PROMPTS[0], 8000)
