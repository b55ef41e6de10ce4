"""A small SIP caller (UAC) for the benchmarks: raw SIP over UDP on 127.0.0.1, one RTP socket per
call, PCMU only.

INVITE with an SDP offer (PCMU + telephone-event), ACK, BYE, and a 200 OK for a BYE from the
bot.  Media: a pacer sends one 20 ms PCMU packet every 20 ms once ``start_media()`` is called,
silence unless an utterance is queued (``say``); received packets are timestamped with
``time.monotonic()`` as they arrive and judged voiced or not by their energy.  Both ends of a
measurement are therefore taken where a phone would take them: on the wire, at the caller.

Voiced means the packet's RMS, decoded from mu-law, is above ``VOICED_RMS`` (0.01 of full
scale, -40 dBFS): the server's silence is digital zero, Piper's speech is far above it.  The
mu-law decoding table is built once from aiortc's PCMU decoder (one codec, one place).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import secrets
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc.codecs.g711 import PcmuDecoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from voicebot.sip.message import SipResponse, parse
from voicebot.sip.sdp import parse_sdp

FRAME_S = 0.02
FRAME_BYTES = 160  # 20 ms of PCMU at 8 kHz
SILENCE = b"\xff" * FRAME_BYTES  # mu-law zero
VOICED_RMS = 0.01  # -40 dBFS


def _ulaw_table() -> np.ndarray:
    """The 256 PCMU code words decoded to float PCM (-1..1), by aiortc's decoder."""
    frames = PcmuDecoder().decode(JitterFrame(data=bytes(range(256)), timestamp=0))
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float64)
    assert len(pcm) == 256
    return pcm / 32768


ULAW = _ulaw_table()


def ulaw_rms(payload: bytes) -> float:
    """RMS of a PCMU payload, 0..1 of full scale."""
    if not payload:
        return 0.0
    x = ULAW[np.frombuffer(payload, dtype=np.uint8)]
    return float(np.sqrt(np.mean(x * x)))


@dataclass
class Utterance:
    """What a caller says: PCMU cut into 20 ms payloads, each marked voiced or not, so the
    moment the last voiced packet leaves is known without decoding anything while sending."""

    text: str
    intent: str | None
    payloads: list[bytes]
    voiced: list[bool]

    @classmethod
    def from_ulaw(cls, text: str, intent: str | None, ulaw: bytes, threshold: float = VOICED_RMS) -> "Utterance":
        ulaw += SILENCE[: -len(ulaw) % FRAME_BYTES]
        payloads = [ulaw[i:i + FRAME_BYTES] for i in range(0, len(ulaw), FRAME_BYTES)]
        return cls(text, intent, payloads, [ulaw_rms(p) > threshold for p in payloads])

    @property
    def seconds(self) -> float:
        return len(self.payloads) * FRAME_S

    @property
    def voiced_s(self) -> float:
        """From the first to the last voiced packet."""
        idx = [i for i, v in enumerate(self.voiced) if v]
        return (idx[-1] - idx[0] + 1) * FRAME_S if idx else 0.0


class RtpPort(asyncio.DatagramProtocol):
    """The caller's RTP socket: arrival times of voiced PCMU packets (and, when ``keep``, every
    datagram with its arrival time, for loss and jitter)."""

    def __init__(self, keep: bool = False, threshold: float = VOICED_RMS) -> None:
        self.keep, self.threshold = keep, threshold
        self.arrivals: list[tuple[float, bytes]] = []
        self.voiced_at: list[float] = []  # monotonic arrival times, ascending
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = time.monotonic()
        self.received += 1
        if self.keep:
            self.arrivals.append((now, data))
        if len(data) < 12 or data[1] & 0x7F != 0:  # PCMU only (DTMF and RTCP are not speech)
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        if ulaw_rms(packet.payload) > self.threshold:
            self.voiced_at.append(now)

    def first_voiced_after(self, t: float) -> float | None:
        i = bisect.bisect_right(self.voiced_at, t)
        return self.voiced_at[i] if i < len(self.voiced_at) else None

    @property
    def last_voiced(self) -> float | None:
        return self.voiced_at[-1] if self.voiced_at else None


class SipPort(asyncio.DatagramProtocol):
    """The caller's SIP socket: responses go to a queue; a BYE from the bot gets its 200 OK."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.bye_received_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = parse(data)
        except Exception:
            return
        if isinstance(message, SipResponse):
            self.responses.put_nowait(message)
        elif data.startswith(b"BYE "):  # the bot hung up first: say OK
            self.bye_received_at = time.monotonic()
            lines = [line for line in data.decode().split("\r\n") if line.split(":")[0] in ("Via", "From", "To", "Call-ID", "CSeq")]
            assert self.transport is not None
            self.transport.sendto(("SIP/2.0 200 OK\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), addr)


@dataclass
class _Queued:
    payloads: list[bytes]
    voiced: list[bool]
    done: asyncio.Future[tuple[float, float | None, float]]
    first_sent: float = 0.0
    last_voiced_sent: float | None = None
    index: int = 0


@dataclass
class SipCall:
    """One call from this caller to ``server`` (host, port).  ``await open()``, ``await
    invite()``, ``ack()``, then listen (``rtp``) and talk (``start_media``, ``say``);
    ``bye()`` and ``await close()`` at the end."""

    server: tuple[str, int]
    user: str = "bank"
    keep_arrivals: bool = False
    call_id: str = field(default_factory=lambda: secrets.token_hex(8))
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    setup_ms: float | None = None
    status: int | None = None
    to_tag: str = ""
    remote_rtp: tuple[str, int] | None = None
    max_send_lag_ms: float = 0.0  # the pacer's worst lateness: the caller's own health
    sip: SipPort = field(default_factory=SipPort)
    rtp: RtpPort = field(default_factory=RtpPort)
    _sip_transport: asyncio.DatagramTransport | None = None
    _rtp_transport: asyncio.DatagramTransport | None = None
    _cseq: int = 1
    _pacer: asyncio.Task[None] | None = None
    _queue: list[_Queued] = field(default_factory=list)

    async def open(self) -> "SipCall":
        loop = asyncio.get_running_loop()
        self.rtp.keep = self.keep_arrivals
        self._sip_transport, _ = await loop.create_datagram_endpoint(lambda: self.sip, local_addr=("127.0.0.1", 0))
        self._rtp_transport, _ = await loop.create_datagram_endpoint(lambda: self.rtp, local_addr=("127.0.0.1", 0))
        return self

    @property
    def sip_port(self) -> int:
        assert self._sip_transport is not None
        return self._sip_transport.get_extra_info("sockname")[1]

    @property
    def rtp_port(self) -> int:
        assert self._rtp_transport is not None
        return self._rtp_transport.get_extra_info("sockname")[1]

    def _request(self, method: str, cseq: int, body: str = "", content_type: str | None = None) -> bytes:
        host, port = self.server
        to_tag = f";tag={self.to_tag}" if self.to_tag else ""
        head = (f"{method} sip:{self.user}@{host}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                f"From: <sip:bench@127.0.0.1>;tag={self.tag}\r\nTo: <sip:{self.user}@{host}>{to_tag}\r\n"
                f"Call-ID: {self.call_id}\r\nMax-Forwards: 70\r\nContact: <sip:bench@127.0.0.1:{self.sip_port}>\r\n"
                f"CSeq: {cseq} {method}\r\n")
        if content_type:
            head += f"Content-Type: {content_type}\r\n"
        return (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()

    async def invite(self, timeout: float = 10.0) -> SipResponse:
        """INVITE and wait for the final response; ``setup_ms`` is INVITE sent to final response.
        Raises TimeoutError when no final response comes within ``timeout``."""
        assert self._sip_transport is not None
        sdp = (f"v=0\r\no=bench 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")
        sent = time.monotonic()
        self._sip_transport.sendto(self._request("INVITE", 1, sdp, "application/sdp"), self.server)
        while True:
            response = await asyncio.wait_for(self.sip.responses.get(), timeout)
            if response.status >= 200:
                break
        self.setup_ms = (time.monotonic() - sent) * 1000
        self.status = response.status
        if response.status == 200:
            self.to_tag = (response.headers.get("To") or "").split(";tag=")[-1]
            try:
                session = parse_sdp(response.body.decode(errors="replace"))
                audio = next(m for m in session.media if m.kind == "audio")
                self.remote_rtp = (audio.connection or session.connection or self.server[0], audio.port)
            except Exception:
                self.remote_rtp = None
        return response

    def ack(self) -> float:
        """Send the ACK; returns when it left (monotonic)."""
        assert self._sip_transport is not None
        self._sip_transport.sendto(self._request("ACK", 1), self.server)
        return time.monotonic()

    def bye(self) -> None:
        assert self._sip_transport is not None
        self._cseq += 1
        self._sip_transport.sendto(self._request("BYE", self._cseq), self.server)

    def start_media(self) -> None:
        """Start sending RTP: a packet every 20 ms, silence unless something is being said."""
        if self._pacer is None:
            self._pacer = asyncio.get_running_loop().create_task(self._pace())

    async def say(self, utterance: Utterance) -> tuple[float, float | None, float]:
        """Queue an utterance; returns (first packet sent, last voiced packet sent, last packet
        sent), monotonic, once its last packet has left."""
        self.start_media()
        queued = _Queued(utterance.payloads, utterance.voiced, asyncio.get_running_loop().create_future())
        self._queue.append(queued)
        return await queued.done

    async def _pace(self) -> None:
        assert self._rtp_transport is not None and self.remote_rtp is not None
        seq, ts, ssrc = random.randrange(1 << 16), random.randrange(1 << 32), random.randrange(1 << 32)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        talking = False
        while True:
            current = self._queue[0] if self._queue else None
            payload = current.payloads[current.index] if current else SILENCE
            packet = RtpPacket(payload_type=0, marker=1 if current and not talking else 0, sequence_number=seq,
                               timestamp=ts, ssrc=ssrc, payload=payload)
            self._rtp_transport.sendto(packet.serialize(), self.remote_rtp)
            now = time.monotonic()
            talking = current is not None
            if current is not None:
                if current.index == 0:
                    current.first_sent = now
                if current.voiced[current.index]:
                    current.last_voiced_sent = now
                current.index += 1
                if current.index == len(current.payloads):
                    self._queue.pop(0)
                    if not current.done.done():
                        current.done.set_result((current.first_sent, current.last_voiced_sent, now))
            seq, ts = (seq + 1) & 0xFFFF, (ts + FRAME_BYTES) & 0xFFFFFFFF
            next_at += FRAME_S
            lag = loop.time() - next_at
            if lag > 0:
                self.max_send_lag_ms = max(self.max_send_lag_ms, lag * 1000)
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def wait_quiet(self, quiet_s: float, timeout: float, since: float | None = None) -> bool:
        """Wait until the bot has spoken (after ``since``, if given) and then been quiet for
        ``quiet_s``; False if that has not happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.rtp.last_voiced
            spoke = last is not None and (since is None or last > since)
            if spoke and time.monotonic() - last >= quiet_s:  # type: ignore[operator]
                return True
            if self.sip.bye_received_at is not None:
                return False
            await asyncio.sleep(0.05)
        return False

    async def close(self, linger: float = 0.2) -> None:
        """Stop sending, wait ``linger`` for the last datagrams, close both sockets."""
        if self._pacer is not None:
            self._pacer.cancel()
            try:
                await self._pacer
            except (asyncio.CancelledError, Exception):
                pass
        for q in self._queue:
            if not q.done.done():
                q.done.cancel()
        await asyncio.sleep(linger)
        for transport in (self._sip_transport, self._rtp_transport):
            if transport is not None:
                transport.close()
