"""What an edge hands to ``calls.py`` and the orders it takes back: the caller's leg, a
transfer out to somewhere voicebot does not answer for (an external PBX/ACD), and an agent's
phone dialled for an offer.  Typed values on the seam, so no module slices another's strings.

Edges (``sip/``, ``webrtc.py``) build these; ``calls.py`` drives them.  Neither side imports
the other's insides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from voicebot.media import EdgeStream


async def _release(stream: EdgeStream, _reason: str) -> None:
    await stream.release()


@dataclass
class CallerLeg:
    """A new call as its edge hands it over.  ``hang_up`` ends the call on the caller's side
    (SIP BYE, closing the peer connection) and frees the transport; it is idempotent.
    ``details`` are written to the call's record (trunk, source address, SIP Call-ID)."""

    stream: EdgeStream
    channel: str  # sip | webrtc | test
    caller: str = ""
    hang_up: Callable[[str], Awaitable[None]] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    async def end(self, reason: str) -> None:
        if self.hang_up is not None:
            await self.hang_up(reason)
        else:
            await _release(self.stream, reason)


@dataclass
class TransferResult:
    """How a transfer out went.  ``kept``: the caller is still on the line with voicebot (the
    target was busy, refused, did not answer), so the bot takes the call back.  ``details`` is
    recorded as it is; ``end_reason`` is the call's end reason when not kept."""

    ok: bool | None
    kept: bool
    target_status: int | None = None
    end_reason: str | None = None
    details: list[dict[str, Any]] = field(default_factory=list)


class OutsideTransfers(Protocol):
    """Queues answered outside voicebot (``sip_transfer_targets``)."""

    def handles(self, queue: str, leg: CallerLeg) -> bool:
        """True when ``queue`` has a target this leg can be transferred to."""
        ...

    async def transfer(self, leg: CallerLeg, queue: str, headers: list[tuple[str, str]],
                       on_connected: Callable[[], None]) -> TransferResult:
        """Transfer (REFER, bridge) and return when it is over: for a bridge that is when one
        side hangs up.  ``headers`` are the X-Voicebot-* handoff headers; ``on_connected`` is
        called when the target answers a bridge."""
        ...


@dataclass
class DialResult:
    """An agent's phone rung for an offer: ``status`` is the final SIP status (200 answered,
    486 busy, 408 no answer in time, 487 cancelled, 503 unreachable); when answered,
    ``leg`` is the agent's media and ``hang_up`` sends the agent's side a BYE."""

    status: int
    leg: EdgeStream | None = None
    hang_up: Callable[[str], Awaitable[None]] | None = None
    reason: str = ""  # why, in words: "busy", "no_answer", "cap" (the trunk's max_calls), "auth", ...


class AgentDialer(Protocol):
    async def dial(self, uri: str, headers: list[tuple[str, str]], ring_s: float) -> DialResult:
        """Ring ``uri`` (an agent's phone) for at most ``ring_s``.  Cancelling the task that
        awaits this sends CANCEL (or BYE to a phone that answered just then) and frees the media."""
        ...


class OutboundCalls(Protocol):
    """voicebot's own calls to customers (callbacks) through ``sip_outbound``."""

    def has_room(self) -> bool:
        """Whether one more call fits under the trunk's ``max_calls`` now."""
        ...

    async def call(self, number: str, headers: list[tuple[str, str]], ring_s: float | None = None) -> DialResult:
        """Call ``number`` (digits, or a SIP URI) through the trunk, presenting its caller ID and
        answering its digest challenges (401/407, once each: a second challenge is a failure).
        ``status`` 200 with a leg when answered; 486 busy, 408/480/487 no answer, 503 with reason
        "cap" when ``max_calls`` are already up, 403/401/407 with reason "auth" when the trunk
        refused the credentials.  Cancelling the awaiting task CANCELs or hangs up."""
        ...
