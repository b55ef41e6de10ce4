"""Shared fixtures: one real MiniLM embedder and one trained bank domain per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT / "domains" / "bank"


@pytest.fixture(scope="session")
def embedder():
    from voicebot.nlu.nlu import default_embedder

    return default_embedder()


@pytest.fixture(scope="session")
def bank(embedder):
    from voicebot.nlu.nlu import load_domain

    return load_domain(BANK, embedder)


@pytest.fixture
def bank_copy(tmp_path: Path) -> Path:
    """A writable copy of the bank domain for tests that edit YAML."""
    target = tmp_path / "bank"
    shutil.copytree(BANK, target)
    return target
