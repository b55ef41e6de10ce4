"""What the SIP edge does for a call's owner: transfer a caller out to a queue answered outside
voicebot (REFER, or a bridge when the REFER is refused or the queue asks for one), and ring
an agent's phone for the ACD.  The owner (``calls.py``) decides when; this knows how, and
reports back as the typed values of ``voicebot/legs.py``."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any

from voicebot.legs import CallerLeg, DialResult, TransferResult
from voicebot.sip.bridge import bridge
from voicebot.sip.call import Signalling, SipCall
from voicebot.sip.dialer import place
from voicebot.sip.refer import refer
from voicebot.sip.transfer import TransferTarget

log = logging.getLogger(__name__)


class SipTransfers:
    """``legs.OutsideTransfers`` and ``legs.AgentDialer`` for one SIP endpoint.  ``targets``:
    queue → where its calls go and how (``sip_transfer_targets``)."""

    def __init__(self, endpoint: Signalling, targets: Mapping[str, TransferTarget]) -> None:
        self.endpoint = endpoint
        self.targets = dict(targets)

    def handles(self, queue: str, leg: CallerLeg) -> bool:
        """The queue has a target, and the leg is a live call of this endpoint."""
        return queue in self.targets and self._call(leg) is not None

    async def transfer(self, leg: CallerLeg, queue: str, headers: list[tuple[str, str]],
                       on_connected: Callable[[], None]) -> TransferResult:
        """REFER (and a bridge if it is refused), or a bridge, as the queue's target says; returns
        when it is over.  The bot must have let go of ``leg.stream`` (closed it, retained) first.
        When the result is ``kept`` the stream has been reopened for the bot; otherwise the
        caller's side is done with and the owner hangs up with ``end_reason``."""
        call, target = self._call(leg), self.targets.get(queue)
        if call is None or target is None:
            log.warning("SIP: cannot transfer to %r: %s", queue, "no target" if call else "not a live SIP call")
            return self._result(call, {"ok": False}, call is not None, [])
        details: list[dict[str, Any]] = []
        if target.method == "refer":
            outcome = await refer(self.endpoint, call, target.uri, headers)
            details.append({"method": "REFER", "target": target.uri, **outcome})
            refused = outcome.get("refer_status") is not None and outcome["refer_status"] >= 300
            if not refused or not call.live:
                # a transferee whose new call failed is still in this dialog (RFC 3515): keep it
                return self._result(call, outcome, not outcome["ok"] and outcome.get("target_status") is not None,
                                    details)
            log.info("SIP: REFER refused for %s; bridging instead", call.dialog.call_id)
        outcome = await bridge(self.endpoint, call, target, headers, on_connected)
        details.append({"method": "bridge", "target": target.uri,
                        **{k: v for k, v in outcome.items() if k != "end_reason"}})
        return self._result(call, outcome, bool(outcome.get("kept")), details)

    async def dial(self, uri: str, headers: list[tuple[str, str]], ring_s: float) -> DialResult:
        """Ring an agent's phone (no ringback: the caller hears the owner's hold music).
        Cancelling the awaiting task CANCELs it, or hangs up one that answered just then."""
        placed = await place(self.endpoint, uri, headers, ring_s)
        if placed.call is None:
            return DialResult(placed.status)
        return DialResult(200, placed.call.rtp, functools.partial(self.endpoint.hang_up, placed.call))

    def _call(self, leg: CallerLeg) -> SipCall | None:
        call = self.endpoint.calls.get(str(leg.details.get("sip_call_id", "")))
        if call is None or call.outbound or call.rtp is not leg.stream or not call.live:
            return None
        return call

    @staticmethod
    def _result(call: SipCall | None, outcome: dict[str, Any], kept: bool,
                details: list[dict[str, Any]]) -> TransferResult:
        kept = kept and call is not None and call.live
        if kept and call is not None:
            call.rtp.reopen()  # the bot takes it again, with nothing stale queued (ringback, speech)
        end_reason = None if kept else outcome.get("end_reason", "transferred" if outcome["ok"] else "transfer_failed")
        return TransferResult(outcome["ok"], kept, outcome.get("target_status"), end_reason, details)
