"""Score a classifier on a labelled set: what `voicebot nlu eval` and the tests report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.nlu.domain import OUT_OF_SCOPE
from voicebot.nlu.intents import IntentClassifier
from voicebot.nlu.yamlsource import DomainError, load_yaml_file


def load_eval_set(path: Path) -> list[tuple[str, str]]:
    """``examples: {intent: [texts]}`` plus ``out_of_scope: [texts]`` → (text, intent) pairs."""
    doc = load_yaml_file(path)
    data = doc.data or {}
    if not isinstance(data, dict) or not isinstance(data.get("examples", {}), dict):
        raise DomainError([doc.problem((), "expected 'examples: {intent: [texts]}' and optional 'out_of_scope: [texts]'")])
    pairs = [(str(t), intent) for intent, texts in data.get("examples", {}).items() for t in texts or []]
    pairs += [(str(t), OUT_OF_SCOPE) for t in data.get("out_of_scope", []) or []]
    return pairs


@dataclass
class EvalReport:
    total: int
    accuracy: float  # all examples, out_of_scope counted as a class
    in_scope_accuracy: float
    oos_recall: float | None
    per_intent: dict[str, dict[str, float]]
    confusion: dict[str, dict[str, int]]
    worst: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def render(self) -> str:
        lines = [
            f"examples           {self.total}",
            f"accuracy           {self.accuracy:.1%}  (out_of_scope counted as a class)",
            f"in-scope accuracy  {self.in_scope_accuracy:.1%}",
            f"out-of-scope recall {'n/a' if self.oos_recall is None else f'{self.oos_recall:.1%}'}",
            "",
            f"{'intent':<22}{'precision':>10}{'recall':>8}{'n':>5}",
        ]
        for name, row in sorted(self.per_intent.items()):
            lines.append(f"{name:<22}{row['precision']:>10.1%}{row['recall']:>8.1%}{int(row['support']):>5}")
        labels = sorted(self.per_intent)
        short = {name: name[:8] for name in labels}
        lines += ["", "confusion (rows: true, columns: predicted)",
                  " " * 22 + "".join(f"{short[n]:>9}" for n in labels)]
        for true in labels:
            row = self.confusion.get(true, {})
            lines.append(f"{true:<22}" + "".join(f"{row.get(p, 0) or '.':>9}" for p in labels))
        if self.worst:
            lines += ["", "worst examples (wrong, most confident first)"]
            for w in self.worst:
                lines.append(f"  {w['confidence']:.2f}  {w['true']} → {w['predicted']}: {w['text']!r}")
        return "\n".join(lines)


def evaluate(classifier: IntentClassifier, pairs: list[tuple[str, str]], worst: int = 10) -> EvalReport:
    predictions = classifier.predict_batch([t for t, _ in pairs])
    confusion: dict[str, Counter[str]] = {}
    wrong = []
    for (text, true), pred in zip(pairs, predictions):
        confusion.setdefault(true, Counter())[pred.intent] += 1
        if pred.intent != true:
            wrong.append({"text": text, "true": true, "predicted": pred.intent, "confidence": round(pred.confidence, 3)})
    labels = set(confusion) | {p for row in confusion.values() for p in row}
    per_intent = {}
    for label in labels:
        tp = confusion.get(label, Counter())[label]
        predicted = sum(row[label] for row in confusion.values())
        support = sum(confusion.get(label, Counter()).values())
        per_intent[label] = {"precision": tp / predicted if predicted else 0.0,
                             "recall": tp / support if support else 0.0, "support": float(support)}
    in_scope = [(t, p) for (_, t), p in zip(pairs, predictions) if t != OUT_OF_SCOPE]
    oos = [p for (_, t), p in zip(pairs, predictions) if t == OUT_OF_SCOPE]
    correct = sum(1 for (_, t), p in zip(pairs, predictions) if p.intent == t)
    wrong.sort(key=lambda w: -w["confidence"])
    return EvalReport(
        total=len(pairs),
        accuracy=correct / len(pairs) if pairs else 0.0,
        in_scope_accuracy=sum(1 for t, p in in_scope if p.intent == t) / len(in_scope) if in_scope else 0.0,
        oos_recall=sum(1 for p in oos if p.intent == OUT_OF_SCOPE) / len(oos) if oos else None,
        per_intent=per_intent,
        confusion={k: dict(v) for k, v in confusion.items()},
        worst=wrong[:worst],
    )
