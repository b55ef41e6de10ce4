"""The admin API token the tests' servers accept (plain text: test settings only), and how a
test presents it: the records and ACD APIs need a login or a token."""

from __future__ import annotations

import json

from voicebot.auth import Directory
from voicebot.config import Settings

TOKEN = "tests-admin-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
ENV = {"VOICEBOT_API_TOKENS": json.dumps([{"name": "tests", "token": TOKEN, "role": "admin"}])}


def directory() -> Directory:
    """A directory that knows only the tests' token."""
    return Directory.from_settings(Settings.model_validate({"api_tokens": json.loads(ENV["VOICEBOT_API_TOKENS"])}))
