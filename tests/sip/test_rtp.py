"""RTP with bytes: G.711 both ways, reordering, duplicates, SSRC changes, bad payloads, DTMF."""

from __future__ import annotations

import struct

import numpy as np
from aiortc.rtp import RtpPacket

from voicebot.media import AudioChunk, Dtmf
from voicebot.sip.rtp import RtpReceiver, RtpSender


def tone(n: int = 160, freq: float = 440.0, start: int = 0) -> bytes:
    t = (np.arange(n) + start) / 8000
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16).tobytes()


def audio(events: list) -> bytes:
    return b"".join(e.pcm for e in events if isinstance(e, AudioChunk))


def test_pcmu_round_trip_with_reordering_and_duplicates() -> None:
    sender = RtpSender(0, "PCMU", ssrc=1234)
    packets = [sender.packet(tone(start=i * 160)) for i in range(20)]
    assert RtpPacket.parse(packets[0]).marker == 1 and RtpPacket.parse(packets[1]).marker == 0
    order = list(range(20))
    order[5], order[6] = order[6], order[5]  # reordered
    order.insert(10, 9)  # duplicated
    receiver = RtpReceiver(0, "PCMU", 101)
    out = []
    for i in order:
        out += receiver.receive(packets[i], 0.0)
    pcm = np.frombuffer(audio(out), dtype=np.int16)
    assert len(pcm) >= 160 * 16  # all but the prefetch tail came out, in order
    expected = np.frombuffer(b"".join(tone(start=i * 160) for i in range(len(pcm) // 160)), dtype=np.int16)
    assert np.corrcoef(pcm.astype(float), expected.astype(float))[0, 1] > 0.99


def test_bad_input_is_dropped_and_counted() -> None:
    receiver = RtpReceiver(8, "PCMA", 101)
    assert receiver.receive(b"\x00garbage", 0.0) == []
    assert receiver.receive(b"", 0.0) == []
    wrong = RtpPacket(payload_type=18, sequence_number=1, timestamp=0, ssrc=5, payload=b"x" * 20).serialize()
    assert receiver.receive(wrong, 0.0) == []
    assert receiver.stats.garbage == 2 and receiver.stats.wrong_payload_type == 1


def test_ssrc_change_restarts_the_stream() -> None:
    receiver = RtpReceiver(0, "PCMU", None)
    for ssrc in (1, 2):
        sender = RtpSender(0, "PCMU", ssrc=ssrc)
        out = []
        for i in range(6):
            out += receiver.receive(sender.packet(tone(start=i * 160)), 0.0)
        assert audio(out)
    assert receiver.stats.ssrc_changes == 1


def dtmf_packet(event: int, end: bool, duration: int, ts: int, seq: int) -> bytes:
    payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
    return RtpPacket(payload_type=101, sequence_number=seq, timestamp=ts, ssrc=9, payload=payload).serialize()


def test_rfc4733_digit_once_despite_end_redundancy() -> None:
    receiver = RtpReceiver(0, "PCMU", 101)
    events = []
    seq = 0
    for ts, event in ((1000, 5), (5000, 11)):  # "5", then "#"
        for duration in (160, 320, 480):
            seq += 1
            events += receiver.receive(dtmf_packet(event, False, duration, ts, seq), 0.0)
        for _ in range(3):  # end packets are sent three times
            seq += 1
            events += receiver.receive(dtmf_packet(event, True, 800, ts, seq), 0.0)
    assert events == [Dtmf("5", 100), Dtmf("#", 100)]


def test_digit_without_end_packets_still_counts_once() -> None:
    receiver = RtpReceiver(0, "PCMU", 101)
    assert receiver.receive(dtmf_packet(1, False, 160, 42, 1), 0.0) == []
    assert receiver.poll(0.5) == []
    assert [e.digit for e in receiver.poll(1.5)] == ["1"]
    assert receiver.poll(3.0) == []


def test_rtcp_sender_report_describes_both_directions() -> None:
    from aiortc.rtp import RtcpPacket, RtcpSrPacket

    from voicebot.sip.rtp import rtcp_report

    sender, peer = RtpSender(0, "PCMU", ssrc=77), RtpSender(0, "PCMU", ssrc=88)
    receiver = RtpReceiver(0, "PCMU", 101)
    for i in range(50):
        sender.packet(tone(start=i * 160))
        packet = peer.packet(tone(start=i * 160))
        if i != 10:  # one lost packet
            receiver.receive(packet, 0.02 * i)
    [report] = RtcpPacket.parse(rtcp_report(sender, receiver, 1.0))
    assert isinstance(report, RtcpSrPacket) and report.ssrc == 77
    assert report.sender_info.packet_count == 50 and report.sender_info.octet_count == 50 * 160
    block = report.reports[0]
    assert block.ssrc == 88 and block.packets_lost == 1 and block.fraction_lost > 0
    receiver.receive_rtcp(b"\x00junk", 1.0)
    assert receiver.stats.garbage == 1


async def test_symmetric_rtp_latches_to_the_real_source_once() -> None:
    import asyncio
    import socket

    from tests.sip.test_endpoint import waiting
    from voicebot.sip.rtp import RtpSession

    def udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    signalled, behind_nat, stranger = udp(), udp(), udp()
    session = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), signalled.getsockname())
    port = await session.open("127.0.0.1")
    caller = RtpSender(0, "PCMU")
    try:
        await asyncio.sleep(0.1)
        assert len(waiting(signalled)) > 0  # before any media: what SDP said
        behind_nat.sendto(caller.packet(tone()), ("127.0.0.1", port))
        stranger.sendto(RtpSender(0, "PCMU").packet(tone()), ("127.0.0.1", port))
        await asyncio.sleep(0.1)
        for sock in (signalled, behind_nat, stranger):  # start counting afresh
            waiting(sock)
        await asyncio.sleep(0.2)
        assert session.latched == behind_nat.getsockname()
        assert len(waiting(behind_nat)) >= 5 and len(waiting(signalled)) == 0 and len(waiting(stranger)) == 0
        session.retarget(stranger.getsockname())  # a re-INVITE moved the media
        await asyncio.sleep(0.1)
        assert session.latched is None and len(waiting(stranger)) > 0
    finally:
        await session.close("done")
        for s in (signalled, behind_nat, stranger):
            s.close()



async def test_keyed_digits_go_out_as_rfc4733_events_in_place_of_audio() -> None:
    import asyncio
    import socket

    from voicebot.sip.rtp import RtpSession

    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    session = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), peer.getsockname())
    await session.open("127.0.0.1")
    try:
        assert session.send_dtmf("7") and session.send_dtmf("#")
        await asyncio.sleep(0.4)
        packets = []
        while True:
            try:
                packets.append(RtpPacket.parse(peer.recv(2048)))
            except BlockingIOError:
                break
    finally:
        await session.close("done")
        peer.close()
    events = [p for p in packets if p.payload_type == 101]
    assert {p.timestamp for p in events} and len({p.timestamp for p in events}) == 2  # two events
    first = [p for p in events if p.timestamp == events[0].timestamp]
    assert first[0].marker == 1 and [p.payload[1] & 0x80 for p in first].count(0x80) == 3  # end sent thrice
    assert struct.unpack("!H", first[-1].payload[2:4])[0] == 800  # 100 ms at 8 kHz
    seqs = [p.sequence_number for p in packets]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # one stream, one sequence
    receiver = RtpReceiver(0, "PCMU", 101)
    heard = [e for p in packets for e in receiver.receive(p.serialize(), 0.0)]
    assert [e.digit for e in heard if isinstance(e, Dtmf)] == ["7", "#"]


def test_no_telephone_event_no_digits() -> None:
    from voicebot.sip.rtp import RtpSession

    session = RtpSession(RtpReceiver(0, "PCMU", None), RtpSender(0, "PCMU"), ("127.0.0.1", 9))
    assert not session.send_dtmf("5") and not RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"),
                                                         ("127.0.0.1", 9)).send_dtmf("X")



def test_a_latch_refuses_every_other_address_and_counts() -> None:
    from voicebot.sip.rtp import SourceLatch, rtcp_fits, rtp_fits

    caller, stranger, signalled = ("198.51.100.5", 40000), ("203.0.113.9", 40000), ("192.0.2.1", 4000)
    packet = RtpSender(0, "PCMU").packet(tone())
    assert rtp_fits(packet, (0, 101)) and not rtp_fits(packet, (8, 101)) and not rtp_fits(b"\x80\x00", (0,))
    latch = SourceLatch(signalled)
    assert latch.admit(stranger, fits=False) and latch.latched is None  # garbage latches nothing
    assert latch.admit(caller, fits=True) and latch.latched == caller
    assert not latch.admit(stranger, fits=True) and not latch.admit((caller[0], 40002), fits=True)  # nor another port
    assert latch.admit(caller, fits=False) and latch.refused == 2
    assert latch.admit(signalled, fits=True) and latch.latched == signalled  # what the SDP named wins it back
    assert not latch.admit(caller, fits=True)
    latch.reset(stranger)  # a re-INVITE moved the media
    assert latch.latched is None and latch.admit(stranger, fits=True)
    report = bytes([0x80, 201, 0, 1, 0, 0, 0, 7])
    assert rtcp_fits(report) and not rtcp_fits(packet) and not rtcp_fits(report[:6])


async def test_audio_injected_from_a_second_socket_never_reaches_the_call() -> None:
    """A caller speaks quietly; a stranger who learnt the port sends loud audio (and RTCP)
    from another socket, with the caller's own SSRC and sequence numbers, and RTCP from
    another host too: none of it is heard, all of it is counted, and our media keeps going
    to the caller."""
    import asyncio
    import socket

    from prometheus_client import REGISTRY

    from tests.sip.test_endpoint import waiting
    from voicebot.sip.rtp import RtpSession

    def udp(host: str = "127.0.0.1") -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(False)
        return s

    def foreign(kind: str) -> float:
        return REGISTRY.get_sample_value("voicebot_rtp_foreign_packets_total", {"kind": kind}) or 0.0

    caller, caller_rtcp, stranger, far = udp(), udp(), udp(), udp("127.0.0.2")
    session = RtpSession(RtpReceiver(0, "PCMU", 101), RtpSender(0, "PCMU"), caller.getsockname())
    port = await session.open("127.0.0.1")
    heard: list[AudioChunk] = []

    async def listen() -> None:
        async for event in session.events():
            if isinstance(event, AudioChunk):
                heard.append(event)

    listener = asyncio.ensure_future(listen())
    before = foreign("rtp"), foreign("rtcp")
    voice, loud = RtpSender(0, "PCMU", ssrc=4242), RtpSender(0, "PCMU", ssrc=4242)
    quiet = (np.sin(2 * np.pi * 440 * np.arange(160) / 8000) * 1000).astype(np.int16).tobytes()
    shout = (np.sign(np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)) * 30000).astype(np.int16).tobytes()
    report = bytes([0x80, 201, 0, 1, 0, 0, 0, 7])
    try:
        for i in range(40):
            caller.sendto(voice.packet(quiet), ("127.0.0.1", port))
            if i >= 3:  # once the caller's media has latched
                stranger.sendto(loud.packet(shout), ("127.0.0.1", port))
                far.sendto(report, ("127.0.0.1", port + 1))  # not from the media's host: never latches
            if i == 5:
                caller_rtcp.sendto(report, ("127.0.0.1", port + 1))
            if i > 5:
                stranger.sendto(report, ("127.0.0.1", port + 1))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        pcm = np.frombuffer(b"".join(c.pcm for c in heard), dtype=np.int16)
        assert 500 < int(np.abs(pcm).max()) < 2000  # the caller, and only the caller
        assert session.stats.foreign_rtp == 37 and foreign("rtp") - before[0] == 37
        assert session.stats.foreign_rtcp == 37 + 34 and foreign("rtcp") - before[1] == 37 + 34
        assert session.stats.rtcp_received == 1 and session.rtcp_remote == caller_rtcp.getsockname()
        assert session.latched == caller.getsockname() and session.remote == caller.getsockname()
        assert waiting(caller) and not waiting(stranger)  # our media still goes to the caller alone
    finally:
        listener.cancel()
        await session.close("done")
        for s in (caller, caller_rtcp, stranger, far):
            s.close()
