"""Intent classification that survives speech-recognition errors.

Two views of an utterance are combined in one multinomial logistic regression:
MiniLM sentence embeddings (meaning: "I misplaced my card" ≈ "lost card") and character
n-gram TF-IDF (spelling: "balants" still shares most trigrams with "balance", which matters
when Whisper mishears a word the embedding model never saw).  Training takes seconds, so
a domain trains from its own examples every time it loads.

Confidence is calibrated by temperature scaling of the logits, fitted on out-of-fold
predictions (or on a held-out set when one is given), so a threshold on confidence means the
same thing for a domain of eight intents as for one of a hundred and fifty.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "out_of_scope"


class Embedder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Return one L2-normalised row per text."""
        ...


class SentenceEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, from a local folder only."""

    def __init__(self, model_dir: str, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer  # heavy import, only when used

        self.model = SentenceTransformer(model_dir, device=device, local_files_only=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            self.model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                              convert_to_numpy=True, show_progress_bar=False),
            dtype=np.float32,
        )


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float
    ranking: tuple[tuple[str, float], ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {"intent": self.intent, "confidence": round(self.confidence, 4),
                "ranking": [[n, round(c, 4)] for n, c in self.ranking]}


def normalise(text: str) -> str:
    return " ".join(text.lower().replace("’", "'").split())


_PHONETIC_RULES = [
    (re.compile(r"[^a-z ]"), ""), (re.compile(r"ph"), "f"), (re.compile(r"(?<=\w)gh"), ""),
    (re.compile(r"ck|q|c(?=[aou])|c$"), "k"), (re.compile(r"c"), "s"), (re.compile(r"z"), "s"),
    (re.compile(r"x"), "ks"), (re.compile(r"dg"), "j"), (re.compile(r"th"), "0"),
    (re.compile(r"v"), "f"), (re.compile(r"[bp]"), "p"), (re.compile(r"[dt]"), "t"),
    (re.compile(r"[gk]"), "k"), (re.compile(r"[mn]"), "n"), (re.compile(r"(?<=\w)[aeiouyhw]"), ""),
    (re.compile(r"(\w)\1+"), r"\1"),
]


def phonetic(text: str) -> str:
    """A crude sounds-like key per word ("balance" → "plns", "payment" → "pant"), so words a
    recogniser mishears as near-homophones still share n-grams with the right intent."""
    out = text.lower()
    for pattern, repl in _PHONETIC_RULES:
        out = pattern.sub(repl, out)
    return out


@dataclass
class ClassifierConfig:
    embedding_weight: float = 1.0
    ngram_weight: float = 1.0
    phonetic_weight: float = 1.0
    ngram_range: tuple[int, int] = (2, 5)
    c: float = 100.0
    cv_folds: int = 5
    neighbours: int = 3
    similarity_weight: float = 2.0
    threshold: float = 0.5


class _Grams:
    """Character n-grams of the text and of its phonetic key, TF-IDF weighted."""

    def __init__(self, ngram_range: tuple[int, int], phonetic_weight: float) -> None:
        self.phonetic_weight = phonetic_weight
        self.spelling = TfidfVectorizer(analyzer="char_wb", ngram_range=ngram_range,
                                        sublinear_tf=True, dtype=np.float32)
        self.sound = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4),
                                     sublinear_tf=True, dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> "_Grams":
        self.spelling.fit(texts)
        if self.phonetic_weight:
            self.sound.fit([phonetic(t) for t in texts])
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        spelling = self.spelling.transform(texts)
        if not self.phonetic_weight:
            return spelling
        sound = self.sound.transform([phonetic(t) for t in texts]) * self.phonetic_weight
        return sp.hstack([spelling, sound], format="csr")


@dataclass
class _Scored:
    """Raw scores for a batch: calibrated class probabilities and example similarity."""

    probs: np.ndarray
    best: np.ndarray
    similarity: np.ndarray

    def in_scope_score(self, similarity_weight: float) -> np.ndarray:
        """One number per row; Platt scaling maps it to P(correct) without re-ranking."""
        return (self.probs.max(axis=1) + similarity_weight * self.similarity)[:, None]


class IntentClassifier:
    """Embeddings + char n-grams → logistic regression, then a calibrated confidence.

    Confidence is P(the predicted intent is right), Platt-scaled on held-out predictions from
    one score: the temperature-scaled class probability plus how close the utterance sits to
    the predicted intent's own nearest examples.  The last feature is what catches
    out-of-scope requests: "book me a flight" may still get most of the probability mass of a
    bank domain's softmax, but it is far from every example.
    """

    def __init__(self, embedder: Embedder, config: ClassifierConfig | None = None) -> None:
        self.embedder = embedder
        self.config = config or ClassifierConfig()
        self.threshold = self.config.threshold
        self.temperature = 1.0
        self.train_seconds = 0.0
        self._vectorizer: _Grams | None = None
        self._model: LogisticRegression | None = None
        self._confidence: LogisticRegression | None = None
        self._train_emb = np.zeros((0, 0), dtype=np.float32)
        self._train_idx = np.zeros(0, dtype=np.int64)

    # ---------------------------------------------------------------- features

    def _new_vectorizer(self) -> "_Grams":
        return _Grams(self.config.ngram_range, self.config.phonetic_weight)

    def _new_model(self) -> LogisticRegression:
        return LogisticRegression(C=self.config.c, max_iter=3000, tol=1e-3)

    def _stack(self, vec: _Grams, norm: Sequence[str], emb: np.ndarray) -> sp.csr_matrix:
        return sp.hstack([sp.csr_matrix(emb * self.config.embedding_weight),
                          vec.transform(norm) * self.config.ngram_weight], format="csr")

    def _neighbour_similarity(self, emb: np.ndarray, best: np.ndarray, train_emb: np.ndarray,
                              train_idx: np.ndarray) -> np.ndarray:
        """Mean cosine similarity to the k nearest examples of each row's predicted class."""
        sims = emb @ train_emb.T
        out = np.empty(len(emb), dtype=np.float64)
        for row, cls in enumerate(best):
            own = sims[row, train_idx == cls]
            k = min(self.config.neighbours, len(own))
            out[row] = np.partition(own, -k)[-k:].mean() if k else 0.0
        return out

    # ---------------------------------------------------------------- training

    def fit(self, texts: Sequence[str], labels: Sequence[str],
            calibration: tuple[Sequence[str], Sequence[str]] | None = None) -> "IntentClassifier":
        """Train on the in-scope examples and calibrate confidence.

        Examples labelled out_of_scope are not a class of their own (a catch-all class swallows
        every misheard request); they teach the confidence calibration what "nothing fits"
        looks like.  Calibration uses ``calibration`` when given, else k-fold out-of-fold
        predictions of the in-scope examples plus the out_of_scope examples.
        """
        start = time.perf_counter()
        pairs = [(normalise(t), str(l)) for t, l in zip(texts, labels)]
        norm = [t for t, l in pairs if l != OUT_OF_SCOPE]
        y = np.asarray([l for _, l in pairs if l != OUT_OF_SCOPE])
        negatives = [t for t, l in pairs if l == OUT_OF_SCOPE]
        emb = self.embedder.encode(norm)
        self._vectorizer = self._new_vectorizer().fit(norm)
        self._model = self._new_model().fit(self._stack(self._vectorizer, norm, emb), y)
        classes = self._model.classes_
        self._train_emb = emb
        self._train_idx = np.searchsorted(classes, y)
        if calibration is not None:
            logits, cal_emb = self._raw([normalise(t) for t in calibration[0]])
            cal_y = np.asarray([str(l) for l in calibration[1]])
            known = np.isin(cal_y, classes)
            self.temperature = _fit_temperature(logits[known], cal_y[known], classes)
            scored = self._score(logits, cal_emb, self._train_emb, self._train_idx)
        else:
            scored, cal_y = self._out_of_fold(norm, emb, y, classes)
            if negatives and scored is not None:
                neg = self._score(*self._raw(negatives), self._train_emb, self._train_idx)
                scored = _Scored(np.vstack([scored.probs, neg.probs]), np.concatenate([scored.best, neg.best]),
                                 np.concatenate([scored.similarity, neg.similarity]))
                cal_y = np.concatenate([cal_y, np.full(len(negatives), OUT_OF_SCOPE)])
        if scored is not None:
            correct = classes[scored.best] == cal_y
            score = scored.in_scope_score(self.config.similarity_weight)
            if correct.all() or not correct.any():  # degenerate: keep the regression defined
                correct = correct.copy()
                correct[np.argmin(score[:, 0])] = not correct.all()
            self._confidence = LogisticRegression(C=1.0).fit(score, correct)
        self.train_seconds = time.perf_counter() - start
        log.info("intent classifier: %d examples, %d intents, %d out-of-scope, T=%.2f, %.1fs",
                 len(norm), len(classes), len(negatives), self.temperature, self.train_seconds)
        return self

    def _raw(self, norm: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated logits and embeddings of normalised texts."""
        assert self._vectorizer is not None, "classifier is not trained"
        emb = self.embedder.encode(norm)
        return self._logits(self._stack(self._vectorizer, norm, emb)), emb

    def _out_of_fold(self, norm: list[str], emb: np.ndarray, y: np.ndarray,
                     classes: np.ndarray) -> tuple[_Scored | None, np.ndarray]:
        _, counts = np.unique(y, return_counts=True)
        folds = min(self.config.cv_folds, int(counts.min()))
        if folds < 2:
            return None, np.asarray([])
        logits = np.full((len(y), len(classes)), -1e3, dtype=np.float64)
        similarity = np.zeros(len(y))
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(norm, y):
            vec = self._new_vectorizer().fit([norm[i] for i in train])
            model = self._new_model().fit(self._stack(vec, [norm[i] for i in train], emb[train]), y[train])
            fold = model.decision_function(self._stack(vec, [norm[i] for i in test], emb[test]))
            logits[np.ix_(test, np.searchsorted(classes, model.classes_))] = fold
            best = logits[test].argmax(axis=1)
            similarity[test] = self._neighbour_similarity(emb[test], best, emb[train],
                                                          np.searchsorted(classes, y[train]))
        self.temperature = _fit_temperature(logits, y, classes)
        probs = _softmax(logits / self.temperature)
        return _Scored(probs, probs.argmax(axis=1), similarity), y

    def _score(self, logits: np.ndarray, emb: np.ndarray, train_emb: np.ndarray,
               train_idx: np.ndarray) -> _Scored:
        probs = _softmax(logits / self.temperature)
        best = probs.argmax(axis=1)
        return _Scored(probs, best, self._neighbour_similarity(emb, best, train_emb, train_idx))

    # ---------------------------------------------------------------- prediction

    @property
    def classes(self) -> list[str]:
        assert self._model is not None, "classifier is not trained"
        return list(self._model.classes_)

    def _logits(self, x: sp.csr_matrix) -> np.ndarray:
        assert self._model is not None, "classifier is not trained"
        logits = self._model.decision_function(x)
        if logits.ndim == 1:  # two classes: sklearn returns one column
            logits = np.stack([-logits / 2, logits / 2], axis=1)
        return logits

    def scores(self, texts: Sequence[str]) -> tuple[_Scored, np.ndarray]:
        """Class probabilities, neighbour similarity and calibrated confidence for a batch."""
        scored = self._score(*self._raw([normalise(t) for t in texts]), self._train_emb, self._train_idx)
        if self._confidence is None:
            confidence = scored.probs.max(axis=1)
        else:
            confidence = self._confidence.predict_proba(scored.in_scope_score(self.config.similarity_weight))[:, 1]
        return scored, confidence

    def predict_batch(self, texts: Sequence[str]) -> list[IntentPrediction]:
        if not texts:
            return []
        scored, confidence = self.scores(texts)
        classes = [str(c) for c in self.classes]
        results = []
        for row, conf in zip(scored.probs, confidence):
            order = np.argsort(-row)[:3]
            ranking = tuple((classes[i], float(row[i])) for i in order)
            best, prob = ranking[0]
            if best == OUT_OF_SCOPE:
                conf = prob  # how sure we are that it is out of scope
            elif conf < self.threshold:
                best = OUT_OF_SCOPE
            results.append(IntentPrediction(best, float(conf), ranking))
        return results

    def predict(self, text: str) -> IntentPrediction:
        if not normalise(text):
            return IntentPrediction(OUT_OF_SCOPE, 0.0, ())
        return self.predict_batch([text])[0]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_temperature(logits: np.ndarray, y: np.ndarray, classes: np.ndarray) -> float:
    """The T minimising negative log-likelihood of softmax(logits / T); a 1-D search."""
    if len(y) == 0:
        return 1.0
    idx = np.searchsorted(classes, y)

    def nll(t: float) -> float:
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), idx].mean())

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 60))
    best = min(grid, key=nll)
    fine = np.linspace(best / 1.2, best * 1.2, 21)
    return float(min(fine, key=nll))
