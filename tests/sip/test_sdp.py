import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.sdp import NotAcceptable, SdpError, build_answer, negotiate, parse_sdp

OFFER = ("v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 6000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
         "a=sendrecv\r\n")


def test_prefers_pcmu_and_keeps_the_callers_dtmf_payload_type() -> None:
    chosen = negotiate(parse_sdp(OFFER))
    assert (chosen.codec, chosen.payload_type, chosen.dtmf_payload_type) == ("PCMU", 0, 101)
    assert (chosen.remote_ip, chosen.remote_port, chosen.direction, chosen.on_hold) == ("127.0.0.1", 6000, "sendrecv", False)
    answer = build_answer(parse_sdp(OFFER), chosen, "127.0.0.1", 40000, 42)
    parsed = parse_sdp(answer)
    assert parsed.media[0].port == 40000 and parsed.media[0].formats == ["0", "101"]
    assert parsed.media[0].rtpmap == {0: ("PCMU", 8000), 101: ("telephone-event", 8000)}


def test_pcma_only_and_odd_dtmf_type() -> None:
    offer = OFFER.replace("m=audio 6000 RTP/AVP 8 0 101", "m=audio 6000 RTP/AVP 8 96").replace("101 telephone", "96 telephone")
    chosen = negotiate(parse_sdp(offer))
    assert (chosen.codec, chosen.dtmf_payload_type) == ("PCMA", 96)


@pytest.mark.parametrize("direction, ours, hold", [("sendonly", "recvonly", True), ("recvonly", "sendonly", False),
                                                   ("inactive", "inactive", True)])
def test_directions(direction: str, ours: str, hold: bool) -> None:
    chosen = negotiate(parse_sdp(OFFER.replace("a=sendrecv", f"a={direction}")))
    assert chosen.direction == ours and chosen.on_hold == hold


def test_old_style_hold_address() -> None:
    assert negotiate(parse_sdp(OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"))).on_hold


def test_video_is_declined_and_audio_answered() -> None:
    offer = OFFER.replace("m=audio", "m=video 7000 RTP/AVP 96\r\nm=audio")
    chosen = negotiate(parse_sdp(offer))
    assert chosen.index == 1
    answer = parse_sdp(build_answer(parse_sdp(offer), chosen, "127.0.0.1", 40000, 1))
    assert [m.port for m in answer.media] == [0, 40000]


@pytest.mark.parametrize("offer", [
    OFFER.replace("m=audio 6000 RTP/AVP 8 0 101", "m=audio 6000 RTP/AVP 9 101"),   # G.722 only
    OFFER.replace("m=audio", "m=video"),                                         # no audio
    "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\n",                          # SDP without media
    OFFER.replace("RTP/AVP", "RTP/SAVP").replace("RTP/SAVP", "UDP/TLS/RTP/SAVPF"),
])
def test_nothing_usable_is_488(offer: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate(parse_sdp(offer))


@pytest.mark.parametrize("text", ["", "hello", "v=1\r\n", "v=0\r\nm=audio x RTP/AVP 0\r\n",
                                  "v=0\r\nc=IN IP4\r\n", OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 not-an-ip")])
def test_malformed_sdp(text: str) -> None:
    with pytest.raises(SdpError):
        negotiate(parse_sdp(text))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_fuzz_sdp(text: str) -> None:
    try:
        negotiate(parse_sdp(text))
    except (SdpError, NotAcceptable):
        pass
