"""One `voicebot serve` inside a private network namespace for the WebRTC caller tests (a real
Chromium, an aiortc client): starting a server loads every model and synthesises every prompt,
tens of seconds on a 2-core machine, so those modules share it (scope: this package).  Each
test tells its own call apart by the call id its client gets, and reads counters as deltas."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import api_token, netns

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def netns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``ns`` (run clients there), ``base`` (the server's URL in it) and ``log`` (its output)."""
    reason = netns.available()
    if reason is not None:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("netns-server")
    log = tmp / "server.log"
    with netns.namespace() as ns, log.open("w") as server_log:
        server = subprocess.Popen(
            [*netns.exec_prefix(ns), sys.executable, "-m", "voicebot.cli", "serve", "--host", netns.SERVER_IP,
             "--port", "8080", "--db", str(tmp / "calls.sqlite3")],
            stdout=server_log, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **api_token.ENV})
        try:
            yield {"ns": ns, "base": f"http://{netns.SERVER_IP}:8080", "log": log, "process": server}
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
