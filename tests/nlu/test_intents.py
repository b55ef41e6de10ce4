"""The classifier on real MiniLM embeddings: accuracy on the held-out bank set, calibration, OOS."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from voicebot.nlu.domain import OUT_OF_SCOPE
from voicebot.nlu.evaluation import evaluate, load_eval_set
from voicebot.nlu.intents import ClassifierConfig, IntentClassifier, phonetic

BANK_EVAL = Path(__file__).resolve().parents[2] / "domains" / "bank" / "eval.yaml"


def test_bank_eval_set_meets_targets(bank) -> None:
    pairs = load_eval_set(BANK_EVAL)
    train_texts = {t.lower() for t in bank.spec.training_data()[0]}
    assert not [t for t, _ in pairs if t.lower() in train_texts], "evaluation examples leaked into training"
    report = evaluate(bank.classifier, pairs)
    assert report.in_scope_accuracy >= 0.95, report.render()
    assert report.oos_recall is not None and report.oos_recall >= 0.80, report.render()


def test_trains_in_seconds(bank) -> None:
    assert bank.classifier.train_seconds < 30


def test_out_of_scope_and_empty(bank) -> None:
    assert bank.classifier.predict("tell me a joke about cats").intent == OUT_OF_SCOPE
    assert bank.classifier.predict("   ").intent == OUT_OF_SCOPE


def test_misheard_words_still_classify(bank) -> None:
    # Recognisers on phone lines drop and swap sounds; none of these are training examples.
    for text, intent in [("i lost my car", "lost_card"), ("what's my balanse", "check_balance"),
                         ("i want to make a pay meant", "make_payment")]:
        assert bank.classifier.predict(text).intent == intent, text


def test_confidence_is_calibrated_on_held_out_examples(bank) -> None:
    """Over the eval set, mean confidence of in-scope predictions tracks their accuracy."""
    pairs = [(t, i) for t, i in load_eval_set(BANK_EVAL) if i != OUT_OF_SCOPE]
    preds = bank.classifier.predict_batch([t for t, _ in pairs])
    accuracy = np.mean([p.intent == i for p, (_, i) in zip(preds, pairs)])
    confidence = np.mean([p.confidence for p in preds])
    assert abs(confidence - accuracy) < 0.15, (confidence, accuracy)


def test_out_of_scope_examples_are_not_a_catch_all_class(embedder) -> None:
    clf = IntentClassifier(embedder, ClassifierConfig(threshold=0.3)).fit(
        ["check my balance", "what's my balance", "how much money do I have", "balance please",
         "I lost my card", "my card was stolen", "block my card", "report a lost card",
         "tell me a joke", "what's the weather"],
        ["balance"] * 4 + ["card"] * 4 + [OUT_OF_SCOPE] * 2)
    assert OUT_OF_SCOPE not in clf.classes
    assert clf.predict("how much is in my account").intent == "balance"


def test_phonetic_key() -> None:
    assert phonetic("payment") == phonetic("pament")
    assert phonetic("bye") == phonetic("by")
