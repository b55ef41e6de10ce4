"""RTP media for SIP calls: aiortc's RtpPacket, JitterBuffer and G.711 codecs underneath.

``RtpReceiver``, ``RtpSender`` and ``SourceLatch`` are sans-I/O (datagrams and addresses in,
events, verdicts and datagrams out); ``RtpSession`` is the thin asyncio glue that makes a
call's RTP a MediaStream.  Bad packets (garbage, wrong payload type, foreign SSRC bursts,
anything from an address other than the one media latched to) are dropped and counted,
never raised.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import random
import struct
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from aiortc.codecs.g711 import PcmaDecoder, PcmaEncoder, PcmuDecoder, PcmuEncoder
from aiortc.clock import current_ntp_time
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket, clamp_packets_lost
from av import AudioFrame
from prometheus_client import Counter

from voicebot.media import AudioChunk, Dtmf, EdgeStream, MediaEvent

log = logging.getLogger(__name__)

RATE = 8000
SAMPLES = 160  # 20 ms
DTMF_TICKS = 5  # a sent digit lasts 100 ms
EVENTS = "0123456789*#ABCD"
RTP_FOREIGN = Counter("voicebot_rtp_foreign_packets_total",
                      "RTP and RTCP packets dropped because they came from an address the call's media did not "
                      "latch to", ["kind"])


@dataclass
class RtpStats:
    received: int = 0
    garbage: int = 0
    wrong_payload_type: int = 0
    ssrc_changes: int = 0
    dtmf_digits: int = 0
    dtmf_sent: int = 0
    sent: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0
    foreign_rtp: int = 0  # dropped: from an address other than the latched one
    foreign_rtcp: int = 0


class SourceLatch:
    """Who may feed a call's media (symmetric RTP, RFC 4961): the first packet that ``fits``
    latches its source address, and from then on packets from any other address or port are
    refused (``admit`` False) and counted.  The one exception is the address the SDP named
    (``signalled``): a fitting packet from there takes the latch back, so a stranger who
    sprays packets before the caller's first one cannot keep a caller who is not behind NAT
    out of the call.  A re-INVITE that moves the media ``reset``s it.  Before latching, a
    packet that does not fit is admitted (the receiver counts it as bad) but latches nothing.
    Pure: bytes and addresses in, a verdict out."""

    def __init__(self, signalled: tuple[str, int] | None = None) -> None:
        self.signalled = signalled
        self.latched: tuple[str, int] | None = None
        self.refused = 0

    def admit(self, addr: tuple[str, int], fits: bool) -> bool:
        if self.latched is None or (fits and addr == self.signalled):
            if fits:
                self.latched = addr
            return True
        if addr == self.latched:
            return True
        self.refused += 1
        return False

    def reset(self, signalled: tuple[str, int] | None = None) -> None:
        self.latched = None
        self.signalled = signalled


def rtp_fits(data: bytes, payload_types: tuple[int | None, ...]) -> bool:
    """An RTP version-2 packet of one of the call's payload types."""
    return len(data) >= 12 and data[0] >> 6 == 2 and data[1] & 0x7F in payload_types


def rtcp_fits(data: bytes) -> bool:
    """An RTCP version-2 packet (SR, RR, SDES, BYE or APP first, RFC 3550 §6.1)."""
    return len(data) >= 8 and data[0] >> 6 == 2 and 200 <= data[1] <= 204


class RtpReceiver:
    def __init__(self, payload_type: int, codec: str, dtmf_payload_type: int | None, prefetch: int = 2) -> None:
        self.payload_type = payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.decoder = PcmuDecoder() if codec == "PCMU" else PcmaDecoder()
        self.prefetch = prefetch
        self.jitter = JitterBuffer(capacity=16, prefetch=prefetch)
        self.ssrc: int | None = None
        self.stats = RtpStats()
        self.statistics: StreamStatistics | None = None  # RFC 3550 loss and jitter, for our reports
        self.last_sr: tuple[int, float] | None = None  # middle 32 bits of the peer's last SR NTP, when
        self.last_packet_at = 0.0
        self._dtmf_seen: set[int] = set()  # event timestamps already reported
        self._dtmf_open: tuple[int, str, float] | None = None  # timestamp, digit, first seen

    def receive(self, data: bytes, now: float) -> list[MediaEvent]:
        try:
            packet = RtpPacket.parse(data)
        except (ValueError, struct.error):
            self.stats.garbage += 1
            return []
        if packet.ssrc != self.ssrc:
            if self.ssrc is not None:
                self.stats.ssrc_changes += 1  # a new source (re-INVITE, SBC switch): start over
            self.ssrc = packet.ssrc
            self.jitter = JitterBuffer(capacity=16, prefetch=self.prefetch)
            self.statistics = StreamStatistics(RATE)
        self.stats.received += 1
        if packet.payload_type == self.payload_type and self.statistics is not None:
            self.statistics.add(packet)
        self.last_packet_at = now
        if packet.payload_type == self.dtmf_payload_type:
            return self._dtmf(packet, now)
        if packet.payload_type != self.payload_type:
            self.stats.wrong_payload_type += 1
            return []
        packet._data = packet.payload  # type: ignore[attr-defined]  # what JitterBuffer joins
        _, frame = self.jitter.add(packet)
        if frame is None:
            return []
        pcm = b"".join(f.to_ndarray().astype(np.int16).tobytes() for f in self.decoder.decode(frame))
        return [AudioChunk(pcm, RATE)] if pcm else []

    def _dtmf(self, packet: RtpPacket, now: float) -> list[MediaEvent]:
        """RFC 4733: one digit per event, however many (end-bit) packets repeat it."""
        if len(packet.payload) < 4:
            self.stats.garbage += 1
            return []
        event, flags, duration = struct.unpack("!BBH", packet.payload[:4])
        if event >= len(EVENTS) or packet.timestamp in self._dtmf_seen:
            return []
        digit = EVENTS[event]
        if flags & 0x80:  # end of event
            self._dtmf_seen.add(packet.timestamp)
            self._dtmf_open = None
            if len(self._dtmf_seen) > 64:
                self._dtmf_seen = set(sorted(self._dtmf_seen)[-32:])
            self.stats.dtmf_digits += 1
            return [Dtmf(digit, duration * 1000 // RATE)]
        if self._dtmf_open is None or self._dtmf_open[0] != packet.timestamp:
            flushed = self.poll(now, force=True)
            self._dtmf_open = (packet.timestamp, digit, now)
            return flushed
        return []

    def poll(self, now: float, force: bool = False) -> list[MediaEvent]:
        """A digit whose end packets were all lost still counts, once, after a second."""
        if self._dtmf_open is None:
            return []
        timestamp, digit, since = self._dtmf_open
        if force or now - since > 1.0:
            self._dtmf_open = None
            self._dtmf_seen.add(timestamp)
            self.stats.dtmf_digits += 1
            return [Dtmf(digit, int((now - since) * 1000))]
        return []


    def receive_rtcp(self, data: bytes, now: float) -> None:
        """Count the peer's reports and remember its last SR (for LSR/DLSR in ours)."""
        try:
            packets = RtcpPacket.parse(data)
        except (ValueError, struct.error):
            self.stats.garbage += 1
            return
        self.stats.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                self.last_sr = ((packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF, now)

    def report_block(self, now: float) -> RtcpReceiverInfo | None:
        if self.ssrc is None or self.statistics is None or self.statistics.packets_received == 0:
            return None
        lsr, dlsr = 0, 0
        if self.last_sr is not None:
            lsr = self.last_sr[0]
            dlsr = int((now - self.last_sr[1]) * 65536)
        stats = self.statistics
        return RtcpReceiverInfo(ssrc=self.ssrc, fraction_lost=stats.fraction_lost,
                                packets_lost=clamp_packets_lost(stats.packets_lost),
                                highest_sequence=(stats.cycles << 16) | (stats.max_seq & 0xFFFF),
                                jitter=stats.jitter, lsr=lsr, dlsr=dlsr)


class RtpSender:
    """20 ms G.711 packets with running sequence numbers and timestamps; the marker bit
    starts each talkspurt."""

    def __init__(self, payload_type: int, codec: str, ssrc: int | None = None) -> None:
        self.payload_type = payload_type
        self.codec = codec
        self.encoder = PcmuEncoder() if codec == "PCMU" else PcmaEncoder()
        self.ssrc = ssrc if ssrc is not None else random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self._talking = False
        self._pts = 0
        self.packets = 0
        self.octets = 0

    def packet(self, pcm: bytes | None) -> bytes:
        """One packet for the next 20 ms: ``pcm`` (320 bytes at 8 kHz) or None for silence."""
        marker = pcm is not None and not self._talking
        self._talking = pcm is not None
        frame = AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(pcm if pcm is not None else bytes(SAMPLES * 2))
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += SAMPLES
        payloads, _ = self.encoder.encode(frame)
        packet = RtpPacket(payload_type=self.payload_type, marker=int(marker), sequence_number=self.sequence,
                           timestamp=self.timestamp, ssrc=self.ssrc, payload=b"".join(payloads))
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + SAMPLES) & 0xFFFFFFFF
        self.packets += 1
        self.octets += len(packet.payload)
        return packet.serialize()


    def skip(self) -> None:
        """20 ms that carry no audio packet (a DTMF event is being sent instead)."""
        self.timestamp = (self.timestamp + SAMPLES) & 0xFFFFFFFF
        self._pts += SAMPLES
        self._talking = False

    def event_packet(self, payload_type: int, digit: str, start: int, duration: int, end: bool, marker: bool) -> bytes:
        """An RFC 4733 telephone-event packet: every packet of one event carries its start
        timestamp and the duration so far; the end bit closes it."""
        payload = struct.pack("!BBH", EVENTS.index(digit), (0x80 if end else 0) | 10, min(duration, 0xFFFF))
        packet = RtpPacket(payload_type=payload_type, marker=int(marker), sequence_number=self.sequence,
                           timestamp=start, ssrc=self.ssrc, payload=payload)
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return packet.serialize()


def rtcp_report(sender: RtpSender, receiver: RtpReceiver, now: float) -> bytes:
    """A sender report with a reception report block (RFC 3550 §6.4) once we have sent media."""
    block = receiver.report_block(now)
    reports = [block] if block is not None else []
    if sender.packets:
        info = RtcpSenderInfo(ntp_timestamp=current_ntp_time(), rtp_timestamp=sender.timestamp,
                              packet_count=sender.packets, octet_count=sender.octets)
        return bytes(RtcpSrPacket(ssrc=sender.ssrc, sender_info=info, reports=reports))
    return bytes(RtcpRrPacket(ssrc=sender.ssrc, reports=reports))


class RtpSession(EdgeStream):
    """A call's RTP as a MediaStream: symmetric RTP, paced 20 ms output, inactivity timeout."""

    def __init__(self, receiver: RtpReceiver, sender: RtpSender, remote: tuple[str, int],
                 inactivity_timeout_s: float = 30.0, on_hold: bool = False) -> None:
        super().__init__(RATE)
        self.receiver = receiver
        self.sender = sender
        self.remote = remote
        self.inactivity_timeout_s = inactivity_timeout_s
        self.on_hold = on_hold
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._pacer: asyncio.Task[None] | None = None
        self.local_port = 0
        self._last_audio = 0.0
        self.rtcp_interval_s = 5.0
        # Symmetric RTP (RFC 4961): send back to where the caller's media really comes from, which
        # behind NAT is not what its SDP says.  Latched once, on the first packet of our payload
        # types; from then on packets from anywhere else are dropped and counted, so a stranger
        # spraying packets can neither take the call's audio nor speak into it.  RTCP likewise,
        # latched on the first report from the host the media latched to.
        self._dtmf_out: deque[str] = deque()  # digits to send (a bridged caller keying to a PBX)
        self._event: tuple[str, int, int] | None = None  # digit, start timestamp, 20 ms ticks sent
        self.signalled = remote  # what SDP said
        self.media_latch = SourceLatch(remote)
        self.rtcp_latch = SourceLatch((remote[0], remote[1] + 1))

    @property
    def latched(self) -> tuple[str, int] | None:
        """Where the caller's media comes from (and ours goes), once known."""
        return self.media_latch.latched

    @property
    def rtcp_remote(self) -> tuple[str, int] | None:
        return self.rtcp_latch.latched

    @property
    def stats(self) -> RtpStats:
        """The call's media statistics, refused foreign packets included."""
        return self.receiver.stats

    async def open(self, host: str, port_range: tuple[int, int] = (40000, 49998)) -> int:
        """Bind an even RTP port and RTCP on the next one (RFC 3550 §11)."""
        loop = asyncio.get_running_loop()
        session = self

        class Media(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                session._received(data, addr)

        class Control(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                session._received_rtcp(data, addr)

        for _ in range(64):
            port = random.randrange(port_range[0], port_range[1], 2)
            try:
                transport, _ = await loop.create_datagram_endpoint(Media, local_addr=(host, port))
            except OSError:
                continue
            try:
                control, _ = await loop.create_datagram_endpoint(Control, local_addr=(host, port + 1))
            except OSError:
                transport.close()
                continue
            self._transport, self._rtcp = transport, control  # type: ignore[assignment]
            self.local_port = port
            self._pacer = asyncio.create_task(self._pace(), name="rtp-pacer")
            return port
        raise OSError("no free RTP/RTCP port pair")

    def configure(self, codec: str, payload_type: int, dtmf_payload_type: int | None, remote: tuple[str, int],
                  on_hold: bool) -> None:
        """Apply a (new) offer/answer: codec, the peer's address, hold."""
        if (codec, payload_type, dtmf_payload_type) != (self.sender.codec, self.receiver.payload_type,
                                                        self.receiver.dtmf_payload_type):
            stats = self.receiver.stats  # the call's, whatever the codec
            self.receiver = RtpReceiver(payload_type, codec, dtmf_payload_type)
            self.receiver.stats = stats
            sender = RtpSender(payload_type, codec, ssrc=self.sender.ssrc)
            sender.sequence, sender.timestamp = self.sender.sequence, self.sender.timestamp  # one stream goes on
            self.sender = sender
        if remote != self.signalled and remote[0] not in ("0.0.0.0", "::"):  # (RFC 2543 hold moves nothing)
            self.retarget(remote)
        self.on_hold = on_hold
        self.receiver.last_packet_at = time.monotonic()

    def send_dtmf(self, digit: str) -> bool:
        """Queue an RFC 4733 digit (100 ms); False when the peer did not offer telephone-event."""
        if self.receiver.dtmf_payload_type is None or digit not in EVENTS or len(digit) != 1:
            return False
        self._dtmf_out.append(digit)
        return True

    def _next_packet(self) -> bytes:
        """What this 20 ms tick sends: the next audio frame, or a DTMF event's packet instead."""
        if self._event is None and self._dtmf_out:
            self._event = (self._dtmf_out.popleft(), self.sender.timestamp, 0)
            self.receiver.stats.dtmf_sent += 1
        if self._event is None:
            return self.sender.packet(self.output.pull())
        digit, start, ticks = self._event
        ticks += 1
        end = ticks >= DTMF_TICKS
        # the end packet goes out three times, one update interval apart (RFC 4733 §2.5.1.4)
        self._event = None if ticks >= DTMF_TICKS + 2 else (digit, start, ticks)
        self.output.pull()  # the audio of these 20 ms gives way to the digit
        self.sender.skip()
        return self.sender.event_packet(self.receiver.dtmf_payload_type or 101, digit, start,
                                        min(ticks, DTMF_TICKS) * SAMPLES, end, marker=ticks == 1)

    def retarget(self, remote: tuple[str, int]) -> None:
        """A re-INVITE moved the caller's media: follow the SDP, and latch afresh."""
        self.remote = self.signalled = remote
        self.media_latch.reset(remote)
        self.rtcp_latch.reset((remote[0], remote[1] + 1))

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.closed:
            return
        was = self.latched
        if not self.media_latch.admit(addr, rtp_fits(data, (self.receiver.payload_type,
                                                            self.receiver.dtmf_payload_type))):
            self.receiver.stats.foreign_rtp += 1
            RTP_FOREIGN.labels("rtp").inc()
            if self.receiver.stats.foreign_rtp == 1:
                log.warning("RTP: dropping packets from %s:%d; this call's media comes from %s:%d", *addr,
                            *(self.latched or ("?", 0)))
            return
        if self.latched is not None and self.latched != was:
            if self.latched != self.signalled:
                log.info("RTP: media comes from %s:%d, not %s:%d as signalled; sending there", *addr, *self.signalled)
            self.remote = self.latched
        now = time.monotonic()
        for event in self.receiver.receive(data, now):
            if isinstance(event, AudioChunk):
                self._last_audio = now
            self.put(event)

    def _received_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        """The peer's reports, from where its RTCP latched (first from the media's host)."""
        media = self.latched
        if (media is not None and addr[0] != media[0]) or not self.rtcp_latch.admit(addr, rtcp_fits(data)):
            self.receiver.stats.foreign_rtcp += 1
            RTP_FOREIGN.labels("rtcp").inc()
            return
        self.receiver.receive_rtcp(data, time.monotonic())

    async def _pace(self) -> None:
        start = time.monotonic()
        ticks = 0
        self.receiver.last_packet_at = start
        while not self.released:
            ticks += 1
            delay = start + ticks * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.released:
                break
            now = time.monotonic()
            for event in self.receiver.poll(now):
                self.put(event)
            if now - self._last_audio > 0.06 and not self.closed:
                # Silence suppression, DTX or a DTMF burst: the caller's clock keeps running,
                # so the pipeline hears silence (and can end the turn), not a frozen stream.
                self.put(AudioChunk(bytes(SAMPLES * 2), RATE))
            if self._transport is not None and not self.on_hold:
                self._transport.sendto(self._next_packet(), self.remote)
                self.receiver.stats.sent += 1
            if self._rtcp is not None and ticks % int(self.rtcp_interval_s / 0.02) == 0:
                try:
                    self._rtcp.sendto(rtcp_report(self.sender, self.receiver, now),
                                      self.rtcp_remote or (self.remote[0], self.remote[1] + 1))
                    self.receiver.stats.rtcp_sent += 1
                except Exception:  # a report is never worth the call: the pacer must keep running
                    log.exception("RTCP report failed")
            if not self.on_hold and now - self.receiver.last_packet_at > self.inactivity_timeout_s:
                await self.close("rtp_timeout")
                await self.release()

    async def _release(self) -> None:
        if self._pacer is not None and self._pacer is not asyncio.current_task():
            self._pacer.cancel()
        for transport in (self._transport, self._rtcp):
            if transport is not None:
                transport.close()


def g711_encode(pcm: bytes, codec: str = "PCMU") -> bytes:
    """8 kHz 16-bit PCM to G.711 bytes (for test callers and recordings)."""
    sender = RtpSender(0 if codec == "PCMU" else 8, codec)
    frame_bytes = SAMPLES * 2
    pcm += bytes(-len(pcm) % frame_bytes)
    return b"".join(RtpPacket.parse(sender.packet(pcm[i:i + frame_bytes])).payload
                    for i in range(0, len(pcm), frame_bytes))
