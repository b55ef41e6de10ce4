"""The SIP edge's settings: where it listens, what it advertises, who may call and how many.
Where a queue's calls are transferred to is not here: that is ``transfers.py``'s business."""

from __future__ import annotations

from dataclasses import dataclass, field

from voicebot.sip.access import Trunk


@dataclass
class SipConfig:
    host: str = "127.0.0.1"
    port: int = 5060  # 0: any free port; ``SipEndpoint.start()`` writes the one it got here
    advertised_host: str | None = None  # the address put in SDP/Contact (NAT)
    rtp_host: str | None = None
    provisional: str = "180"  # 180, 183 or none: what the caller sees before the answer
    answer_after_s: float = 0.0  # ring this long before answering (a CANCEL may come first)
    max_calls: int = 20  # inbound calls at once; legs voicebot places do not count
    allowed_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    rtp_timeout_s: float = 30.0
    tcp: bool = True
    max_setups_per_s: float = 10.0  # new INVITEs accepted per second (burst: one second's worth)
    # new INVITEs one source address may send per second (burst: one second's worth), counted
    # before anything else, challenges and refusals included; None: twice max_setups_per_s (a
    # trunk with digest sends two INVITEs a call), so one trunk alone meets the global limit first
    max_setups_per_source_per_s: float | None = None
    max_transactions: int = 4096  # server transactions at once (see transaction.py for who gets room)
    tcp_max_connections: int = 256
    tcp_max_per_source: int = 16
    tcp_idle_timeout_s: float = 120.0  # no complete message for this long, and no call on it: closed
    credentials: dict[str, str] = field(default_factory=dict)  # digest users for sources off the allow-list
    realm: str = "voicebot"
    digest_algorithms: tuple[str, ...] = ("SHA-256", "MD5")  # offered in this order; leave out MD5 to refuse it
    trunks: list[Trunk] = field(default_factory=list)  # when set, replaces allowed_networks/credentials

    def access_trunks(self) -> list[Trunk]:
        """The trunks, or the two that allowed_networks and credentials stand for."""
        if self.trunks:
            return self.trunks
        implicit = [Trunk("allowed", networks=self.allowed_networks)] if self.allowed_networks else []
        return implicit + ([Trunk("digest", credentials=self.credentials)] if self.credentials else [])

    @property
    def setups_per_source_per_s(self) -> float:
        return self.max_setups_per_source_per_s or 2 * self.max_setups_per_s

    @property
    def public_host(self) -> str:
        return self.advertised_host or self.host

    @property
    def contact(self) -> str:
        """Our Contact URI, in dialogs we answer and in those we start."""
        return f"sip:voicebot@{self.public_host}:{self.port}"

    @property
    def media_host(self) -> str:
        """The address RTP sockets bind to."""
        return self.rtp_host or self.host
