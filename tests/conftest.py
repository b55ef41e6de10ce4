"""Shared fixtures: one real MiniLM embedder, one trained bank domain and one set of voice engines
per test session.

And the rule that CI never passes by skipping: a test skipped because a real client or
privilege it drives is missing (SIPp, baresip, Chromium, Playwright, root for a network
namespace: the reason names it) fails instead, unless VOICEBOT_ALLOW_SKIPS=1 is set; .ci/run
and `make test` never set it.  A developer without those tools may set it to run the rest.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One prompt-audio folder for the session, shared by the in-process engines and every server the
# tests start (they inherit the environment): the first warm-up synthesises, the rest read it, and
# nothing a developer's own server cached is played to a test.
os.environ["VOICEBOT_PROMPT_CACHE"] = tempfile.mkdtemp(prefix="voicebot-prompts-")
atexit.register(shutil.rmtree, os.environ["VOICEBOT_PROMPT_CACHE"], True)

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


@pytest.fixture(scope="session")
def bank_unrecorded(bank):
    """The bank without call recording: no consent prompt, for call tests not about recording."""
    from tests.bank_variants import unrecorded

    return unrecorded(bank)


@pytest.fixture(scope="session")
def voice_engines(bank):
    """One set of voice engines (Whisper, Piper with the bank's prompts warmed, Silero) for every
    in-process call test: loading and warming them costs tens of seconds on a 2-core machine.
    A module that needs other settings swaps ``config`` on a shallow copy."""
    from voicebot.pipeline.call import Engines

    engines = Engines()
    engines.warm_prompts(bank)
    return engines


@pytest.fixture
def bank_copy(tmp_path: Path) -> Path:
    """A writable copy of the bank domain for tests that edit YAML."""
    target = tmp_path / "bank"
    shutil.copytree(BANK, target)
    return target


# What a skip's reason names when a real client or privilege is missing (see the docstring).
MISSING_CLIENT = re.compile(r"sipp|sip-tester|baresip|chromium|playwright|namespace|iproute2|needs root|espeak"
                            r"|\bsox\b|not installed", re.IGNORECASE)


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _no_skipping(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail") or os.environ.get("VOICEBOT_ALLOW_SKIPS") == "1":
        return
    reason = _skip_reason(report)
    if MISSING_CLIENT.search(reason):
        report.outcome = "failed"
        report.longrepr = (f"not skipped: {reason}\nCI never passes by skipping a test for a missing real client"
                           " (run `make test-deps`); VOICEBOT_ALLOW_SKIPS=1 lets a developer skip it")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    _no_skipping(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield  # a module-level pytest.importorskip / pytest.skip(allow_module_level=True)
    _no_skipping(outcome.get_result())
