"""voicebot's own calls to customers (callbacks), out through the configured trunk
(``sip_outbound``): the number made a URI at the trunk, the caller ID presented, the trunk's
digest challenges answered, and no more calls at once than it allows.  ``legs.OutboundCalls``
for ``calls.py``; the dialling itself is ``dialer.place``'s."""

from __future__ import annotations

import asyncio
import functools
import logging
import re

from voicebot.config import OutboundTrunkSettings
from voicebot.legs import DialResult
from voicebot.sip.call import Signalling, SipCall
from voicebot.sip.dialer import Placed, place
from voicebot.sip.message import NameAddr
from voicebot.sip.uac import Credentials

log = logging.getLogger(__name__)
NUMBER = re.compile(r"^\+?[0-9]+$")
_TRUNK = re.compile(r"^(sips?):(?:[^@;?]*@)?([^;?]+)((?:;[^?]*)?)", re.I)
REASONS = {486: "busy", 600: "busy", 408: "no_answer", 480: "no_answer", 487: "no_answer",
           401: "auth", 403: "auth", 407: "auth"}


def trunk_uri(number: str, trunk: str) -> str:
    """``sip:<number>@<trunk host:port><trunk params>`` for digits (a leading + kept); a SIP URI
    as it is.  ValueError for anything else (an anonymous caller's "number")."""
    if re.match(r"^sips?:", number, re.I):
        return number
    if not NUMBER.match(number):
        raise ValueError(f"not a number to call: {number!r}")
    match = _TRUNK.match(trunk.strip())
    if match is None:
        raise ValueError(f"not a SIP URI: {trunk!r}")
    scheme, hostport, params = match.groups()
    return f"{scheme}:{number}@{hostport}{params}"


def reason_of(placed: Placed) -> str:
    """The outcome in the words ``DialResult.reason`` uses."""
    if placed.call is not None:
        return "answered"
    if placed.error is not None:
        return "unreachable"  # no address, no media port: the INVITE never left
    return REASONS.get(placed.status, "failed")


class OutboundTrunk:
    """``legs.OutboundCalls`` through one trunk.  A call holds one of ``max_calls`` places from
    the moment it is dialled until it is over: not answered, or answered and hung up by either
    side (its media released)."""

    def __init__(self, endpoint: Signalling, settings: OutboundTrunkSettings) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self._credentials = (Credentials(settings.username, settings.password or "")
                             if settings.username else None)
        self._dialling = 0
        self._up: dict[str, SipCall] = {}  # answered, by Call-ID

    @property
    def in_use(self) -> int:
        """Calls dialling, and answered ones still up."""
        self._up = {key: call for key, call in self._up.items() if not call.rtp.released}
        return self._dialling + len(self._up)

    def has_room(self) -> bool:
        return self.in_use < self.settings.max_calls

    async def call(self, number: str, headers: list[tuple[str, str]], ring_s: float | None = None) -> DialResult:
        """Call ``number`` through the trunk, presenting its caller ID (From and
        P-Asserted-Identity).  503 "cap" at once when ``max_calls`` are up; 484 "failed" for
        what is no number.  Cancelling the awaiting task CANCELs, or hangs up, and frees the place."""
        if not self.has_room():
            log.info("SIP trunk: call to %s not placed: %d calls up (max_calls)", number, self.in_use)
            return DialResult(503, reason="cap")
        try:
            uri = trunk_uri(number, self.settings.uri)
        except ValueError as exc:
            log.warning("SIP trunk: %s", exc)
            return DialResult(484, reason="failed")
        public_host = self.endpoint.config.public_host
        caller_id = self.settings.caller_id
        from_uri = f"sip:{caller_id}@{public_host}" if caller_id else None
        identity = [("P-Asserted-Identity", str(NameAddr(caller_id, from_uri, {})))] if from_uri else []
        ring_s = self.settings.ring_s if ring_s is None else ring_s
        self._dialling += 1
        try:
            placed = await place(self.endpoint, uri, [*identity, *headers], ring_s, from_uri=from_uri,
                                 display=caller_id, credentials=self._credentials, next_hop=self.settings.uri)
        except asyncio.CancelledError:
            log.info("SIP trunk: call to %s withdrawn", uri)
            raise
        finally:
            self._dialling -= 1
        reason = reason_of(placed)
        log.info("SIP trunk: call to %s: %s (%s)%s", uri, reason, placed.status,
                 f": {placed.error}" if placed.error else "")
        if placed.call is None:
            return DialResult(placed.status, reason=reason)
        call = placed.call
        self._up[call.dialog.call_id] = call
        return DialResult(200, call.rtp, functools.partial(self.endpoint.hang_up, call), reason=reason)
