"""Blind transfer out with REFER (RFC 3515): what to put in it, and how to read the NOTIFYs.

The caller's phone (or the PBX that holds the caller) is asked to call the target itself; the
handoff context travels as X-Voicebot-* headers, as URI headers in Refer-To (so they land in
the INVITE the transferee sends), and as a User-to-User header (RFC 7433).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class TransferTarget:
    """Where a queue's calls go: ``refer`` asks the caller's side to call ``uri`` (and bridges
    when the REFER is refused); ``bridge`` calls ``uri`` from voicebot and relays the media,
    so the caller stays with voicebot if nobody answers within ``ring_s``."""

    uri: str
    method: str = "refer"  # refer | bridge
    ring_s: float = 30.0


def uri_address(uri: str) -> tuple[str, int]:
    """Host and port to send to for a SIP URI (no DNS SRV: give a proxy's address instead)."""
    match = re.match(r"^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;?>]+)(?::(\d+))?", uri.strip().strip("<>"), re.I)
    if match is None:
        raise ValueError(f"not a SIP URI: {uri!r}")
    return match.group(1).strip("[]"), int(match.group(2) or 5060)


def handoff_headers(record: dict[str, Any] | None, context_url: str) -> list[tuple[str, str]]:
    """X-Voicebot-* headers from a call record: who, why, where, and where to read the rest."""
    record = record or {}
    transfer = record.get("transfer") or {}
    caller_turns = [t for t in record.get("turns", []) if t.get("speaker") == "caller" and t.get("intent")]
    last = caller_turns[-1] if caller_turns else {}
    headers = [
        ("X-Voicebot-Call-Id", str(record.get("id", ""))),
        ("X-Voicebot-Queue", str(transfer.get("queue", ""))),
        ("X-Voicebot-Reason", str(transfer.get("reason", ""))),
        ("X-Voicebot-Priority", str(transfer.get("priority", 0))),
        ("X-Voicebot-Intent", str(last.get("intent") or "")),
        ("X-Voicebot-Context", context_url),
    ]
    return [(k, _token(v)) for k, v in headers if v]


UUI_MAX_OCTETS = 128  # what survives interworking with ISDN (RFC 7433 §4.1)


def user_to_user(headers: list[tuple[str, str]]) -> str:
    """RFC 7433: the essentials hex-encoded, so any PBX can carry them to the agent; the
    context URL too when it fits in what ISDN interworking carries."""
    text = ";".join(f"{k[11:].lower()}={v}" for k, v in headers if k in ("X-Voicebot-Call-Id", "X-Voicebot-Reason",
                                                                         "X-Voicebot-Intent"))
    context = next((v for k, v in headers if k == "X-Voicebot-Context"), "")
    if context and len(text.encode()) + len(context.encode()) + 9 <= UUI_MAX_OCTETS:
        text += f";context={context}"
    return f"{text.encode()[:UUI_MAX_OCTETS].hex()};encoding=hex;purpose=call-info"


MAX_REFER_TO = 250  # some phones drop a longer Refer-To (baresip 1.0 transfers to '' past 255)


def refer_to(target: str, headers: list[tuple[str, str]], uui: str) -> str:
    """``<target?X-Voicebot-...=...&User-to-User=...>``: URI headers ride into the new INVITE.

    Headers go in in order of importance while the value stays under MAX_REFER_TO; the REFER
    itself always carries all of them, and the call id leads to the rest."""
    query = ""
    for name, value in [*headers, ("User-to-User", uui)]:
        part = f"{'&' if query else '?'}{name}={quote(value, safe='')}"
        if len(target) + len(query) + len(part) + 2 <= MAX_REFER_TO:
            query += part
    return f"<{target}{query}>"


def sipfrag_status(body: bytes) -> int | None:
    """The status line of a message/sipfrag NOTIFY body ("SIP/2.0 200 OK" → 200)."""
    match = re.match(rb"\s*SIP/2\.0\s+(\d{3})", body)
    return int(match.group(1)) if match else None


def _token(value: str) -> str:
    return re.sub(r"[\r\n]", " ", value)[:256]
