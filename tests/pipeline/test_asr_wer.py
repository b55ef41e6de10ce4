"""The WER benchmark's pure parts (benchmarks/asr_wer.py): the prompt-text parser, the
normaliser both sides go through, and the word alignment.  No model, no audio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "asr_wer.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_asr_wer", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


wer = _load()

TEXT = """; Core Asterisk Sounds in English

activated: Activated.
beep: [this is a simple beep tone]
digits/5: five
letters/at: at [@]
silence/1: (1 second of silence)
spy-iax2: IAX (note: does not say "2")
vm-intro: Please leave your message after the tone.  When done press the pound key. (simple tone sound plays)
conf-adminmenu: Please press 1 to mute or unmute yourself, 2 to lock it.
"""


def test_parser_drops_annotations_and_keeps_folder_names() -> None:
    prompts = wer.parse_prompts(TEXT)
    assert prompts["activated"] == "Activated."
    assert prompts["digits/5"] == "five"
    assert prompts["letters/at"] == "at"
    assert prompts["spy-iax2"] == "IAX"
    assert prompts["vm-intro"] == "Please leave your message after the tone. When done press the pound key."
    assert prompts["beep"] == "" and prompts["silence/1"] == ""  # no speech: the benchmark skips them
    assert len(prompts) == 8


def test_corpus_counts_prompts_without_text_or_audio(tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    for name in ("activated", "beep", "digits/5"):
        (tmp_path / f"{name}.wav").write_bytes(b"")
    text = tmp_path / "core-sounds-en.txt"
    text.write_text(TEXT)
    corpus = wer.load_corpus(text, tmp_path)
    assert [p.name for p in corpus.prompts] == ["activated", "digits/5"]
    assert corpus.prompts[1].wav == tmp_path / "digits" / "5.wav"
    assert corpus.no_text == ["beep", "silence/1"]
    assert corpus.no_audio == ["letters/at", "spy-iax2", "vm-intro", "conf-adminmenu"]


@pytest.mark.parametrize("text, words", [
    ("Please press 1 to mute, 2 to lock.", "please press one to mute two to lock"),
    ("five", "five"),
    ("At 10:30 A.M.", "at ten thirty am"),
    ("at 10:00", "at ten"),
    ("a 28.8 kilobit modem", "a twenty eight point eight kilobit modem"),
    ("1,000 and 1234", "one thousand and one thousand two hundred thirty four"),
    ("the 21st, the 3rd and the 40th", "the twenty first the third and the fortieth"),
    ("007", "zero zero seven"),
    ("3D audio", "three d audio"),
    ("I don't know; Call-Forward on Busy...", "i dont know call forward on busy"),
    ("press * or #", "press star or pound"),
    ("Ninety-nine", "ninety nine"),
    ("1000000", "one million"),
])
def test_normalise_writes_numbers_as_words(text: str, words: str) -> None:
    assert wer.normalise(text) == words.split()


def test_same_numbers_either_way() -> None:
    assert wer.normalise("Press 5 for the 12th option") == wer.normalise("press five for the twelfth option")


@pytest.mark.parametrize("reference, hypothesis, counts", [
    ("a b c d", "a b c d", (0, 0, 0)),
    ("a b c d", "a x c d", (1, 0, 0)),
    ("a b c d", "a c d", (0, 1, 0)),
    ("a b c d", "a b c d e", (0, 0, 1)),
    ("a b c d", "x a b d", (0, 1, 1)),
    ("a b", "", (0, 2, 0)),
    ("", "a", (0, 0, 1)),
])
def test_align_counts_each_kind_of_edit(reference: str, hypothesis: str, counts: tuple[int, int, int]) -> None:
    edits = wer.align(reference.split(), hypothesis.split())
    assert (edits.substitutions, edits.deletions, edits.insertions) == counts
    assert edits.reference_words == len(reference.split())


def test_wer_is_edits_over_reference_words() -> None:
    assert wer.align("a b c d".split(), "a x c".split()).wer == 0.5
    assert wer.align([], ["a"]).wer == 1.0 and wer.align([], []).wer == 0.0


def test_spread_takes_evenly_spaced_prompts() -> None:
    items = list(range(10))
    assert wer.spread(items, 5) == [0, 2, 4, 6, 8]
    assert wer.spread(items, None) == items and wer.spread(items, 20) == items
