"""Blind transfer with REFER (RFC 3515): the caller's side is asked to call the target itself,
and the NOTIFY sipfrags say how that went.  The asyncio half of it; what goes into the REFER
is transfer.py's."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from voicebot.sip.call import Signalling, SipCall
from voicebot.sip.transfer import refer_to, user_to_user

log = logging.getLogger(__name__)
FINAL_NOTIFY_S = 30.0


async def refer(endpoint: Signalling, call: SipCall, target: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
    """REFER with the handoff ``headers``, then follow the NOTIFYs to a final status.
    ``refer_status`` is the answer to the REFER (405/501/603: the caller's side won't, so the
    transfer bridges instead); ``target_status`` what the transferee's own call to the target got."""
    uui = user_to_user(headers)
    statuses: asyncio.Queue[int] = asyncio.Queue()
    endpoint.on_notify(call.dialog.call_id, statuses.put_nowait)
    try:
        accepted = await endpoint.request(call, "REFER", [
            ("Refer-To", refer_to(target, headers, uui)), ("Referred-By", f"<{call.dialog.contact}>"), *headers,
            ("User-to-User", uui)])
        if not 200 <= accepted < 300:
            log.warning("SIP: REFER of %s to %s refused (%s)", call.dialog.call_id, target, accepted)
            return {"ok": False, "refer_status": accepted}
        deadline = time.monotonic() + FINAL_NOTIFY_S
        while time.monotonic() < deadline:
            if call.dialog.state == "terminated":  # the transferee hung up on us without a final NOTIFY
                return {"ok": None, "refer_status": accepted, "target_status": None, "outcome": "transferee_left"}
            try:
                status = await asyncio.wait_for(statuses.get(), 0.25)
            except asyncio.TimeoutError:
                continue
            if status >= 200:
                log.info("SIP: transfer of %s to %s ended %s", call.dialog.call_id, target, status)
                return {"ok": 200 <= status < 300, "refer_status": accepted, "target_status": status}
        return {"ok": None, "refer_status": accepted, "target_status": None, "outcome": "no_final_notify"}
    finally:
        endpoint.on_notify(call.dialog.call_id, None)
