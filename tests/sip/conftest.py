"""One `voicebot serve` for the SIP tests that call it with real clients (SIPp, baresip).

Starting a server loads every model and synthesises every prompt: tens of seconds on a 2-core
machine, so the modules that call one share it (scope: this package).  Its settings are what
they need together: ringing for a second before answering (a CANCEL must find the call
ringing), room for twenty calls at once, and two transfer targets, both one agent phone that a
test runs when it needs it: ``general`` by REFER (bridged when refused) and ``disputes``
bridged.  Each test tells its own calls apart by the call ids there were before it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.sip.harness import free_port, voicebot_server


@pytest.fixture(scope="package")
def sip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("sip")
    agent_port = free_port(socket.SOCK_DGRAM)
    agent = f"sip:agent@127.0.0.1:{agent_port}"
    targets = {"general": agent, "disputes": {"uri": agent, "method": "bridge", "ring_s": 10}}
    with voicebot_server(tmp, {"VOICEBOT_SIP_ANSWER_AFTER_S": "1.0", "VOICEBOT_MAX_CALLS": "20",
                               "VOICEBOT_SIP_MAX_SETUPS_PER_S": "50",
                               "VOICEBOT_SIP_TRANSFER_TARGETS": json.dumps(targets)}) as server:
        yield {**server, "agent_port": agent_port, "agent": agent}
