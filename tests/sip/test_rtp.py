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

