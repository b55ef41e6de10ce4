"""A loaded, trained domain: the spec plus its classifier, built once and shared by calls."""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from voicebot.nlu.domain import DomainSpec, domain_files, load_domain_spec
from voicebot.nlu.intents import ClassifierConfig, Embedder, IntentClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Domain:
    spec: DomainSpec
    classifier: IntentClassifier
    fingerprint: str

    @property
    def name(self) -> str:
        return self.spec.settings.name


def fingerprint(root: Path) -> str:
    """Content hash of the domain's files: what hot reload compares (mtimes lie on some editors)."""
    digest = hashlib.sha256()
    for path in domain_files(root):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"\0missing")
    return digest.hexdigest()


def load_domain(root: Path | str, embedder: Embedder) -> Domain:
    """Validate and train; raises DomainError with every problem, file:line, if invalid."""
    root = Path(root)
    stamp = fingerprint(root) if root.is_dir() else ""
    spec = load_domain_spec(root)
    texts, labels = spec.training_data()
    classifier = IntentClassifier(embedder, ClassifierConfig(threshold=spec.settings.nlu.confidence_threshold))
    classifier.fit(texts, labels)
    return Domain(spec=spec, classifier=classifier, fingerprint=stamp)


_default_embedder: Embedder | None = None
_embedder_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process-wide MiniLM instance (one model per process, shared by every call)."""
    global _default_embedder
    with _embedder_lock:
        if _default_embedder is None:
            from voicebot.modelstore import resolve
            from voicebot.nlu.intents import SentenceEmbedder

            _default_embedder = SentenceEmbedder(str(resolve("embeddings")))
        return _default_embedder
