"""SDP (RFC 4566) and offer/answer (RFC 3264) for G.711 telephony: text in, answer text out.

voicebot answers with PCMU or PCMA at 20 ms, plus RFC 4733 telephone-event at whatever payload
type the caller offered; any other stream is declined with port 0, and an offer with nothing
usable raises ``NotAcceptable`` (488).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

STATIC = {0: ("PCMU", 8000), 8: ("PCMA", 8000)}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class SdpError(Exception):
    """Malformed SDP (answer 400)."""


class NotAcceptable(Exception):
    """Well-formed SDP with nothing voicebot can speak (answer 488)."""


@dataclass
class Media:
    kind: str
    port: int
    proto: str
    formats: list[str]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    connection: str | None = None
    direction: str | None = None
    ptime: int | None = None


@dataclass
class Session:
    origin: str
    connection: str | None
    direction: str
    media: list[Media]


def parse_sdp(text: str) -> Session:
    if not text.strip():
        raise SdpError("empty SDP")
    origin, connection, direction = "", None, "sendrecv"
    media: list[Media] = []
    seen_version = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"malformed SDP line {line[:60]!r}")
        key, value = line[0], line[2:].strip()
        if key == "v":
            if value != "0":
                raise SdpError(f"unsupported SDP version {value!r}")
            seen_version = True
        elif key == "o":
            origin = value
        elif key == "c":
            parts = value.split()
            if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
                raise SdpError(f"bad c= line {value!r}")
            address = parts[2].split("/")[0]
            if media:
                media[-1].connection = address
            else:
                connection = address
        elif key == "m":
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"bad m= line {value!r}")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError(f"bad port in {value!r}")
            media.append(Media(parts[0], port, parts[2], parts[3:]))
        elif key == "a":
            name, _, arg = value.partition(":")
            target_direction = name in DIRECTIONS
            if target_direction:
                if media:
                    media[-1].direction = name
                else:
                    direction = name
            elif media and name == "rtpmap":
                pt_text, _, encoding = arg.partition(" ")
                enc = encoding.strip().split("/")
                if pt_text.isdigit() and len(enc) >= 2 and enc[1].isdigit():
                    media[-1].rtpmap[int(pt_text)] = (enc[0], int(enc[1]))
            elif media and name == "fmtp":
                pt_text, _, params = arg.partition(" ")
                if pt_text.isdigit():
                    media[-1].fmtp[int(pt_text)] = params.strip()
            elif media and name == "ptime" and arg.strip().isdigit():
                media[-1].ptime = int(arg.strip())
    if not seen_version:
        raise SdpError("SDP has no v= line")
    return Session(origin, connection, direction, media)


@dataclass(frozen=True)
class Negotiated:
    index: int  # which m-line
    codec: str
    payload_type: int
    dtmf_payload_type: int | None
    remote_ip: str
    remote_port: int
    direction: str  # ours, in the answer
    on_hold: bool


def _codec(media: Media, pt: int) -> str | None:
    if pt in media.rtpmap:
        name, rate = media.rtpmap[pt]
        return name.upper() if name.upper() in ("PCMU", "PCMA") and rate == 8000 else None
    return STATIC.get(pt, (None,))[0]


def negotiate(session: Session, prefer: tuple[str, ...] = ("PCMU", "PCMA")) -> Negotiated:
    for index, media in enumerate(session.media):
        if media.kind != "audio" or media.port == 0 or "RTP/AVP" not in media.proto.upper():
            continue
        offered = [int(f) for f in media.formats if f.isdigit()]
        codecs = {pt: _codec(media, pt) for pt in offered}
        chosen = None
        for name in prefer:
            chosen = next((pt for pt in offered if codecs[pt] == name), None)
            if chosen is not None:
                break
        if chosen is None:
            continue
        dtmf = next((pt for pt in offered if media.rtpmap.get(pt, ("", 0))[0].lower() == "telephone-event"
                     and media.rtpmap[pt][1] == 8000), None)
        address = media.connection or session.connection
        if address is None:
            raise SdpError("no connection address (c=) for the audio stream")
        direction = media.direction or session.direction
        hold = direction in ("sendonly", "inactive") or address in ("0.0.0.0", "::")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SdpError(f"connection address {address!r} is not an IP address") from None
        return Negotiated(index, codecs[chosen] or "PCMU", chosen, dtmf, address, media.port,
                          ANSWER_DIRECTION[direction], hold)
    raise NotAcceptable("no audio stream with PCMU or PCMA over RTP/AVP")


def build_answer(offer: Session, chosen: Negotiated, local_ip: str, local_port: int, session_id: int,
                 version: int = 1) -> str:
    family = "IP6" if ":" in local_ip else "IP4"
    lines = ["v=0", f"o=voicebot {session_id} {version} IN {family} {local_ip}", "s=voicebot",
             f"c=IN {family} {local_ip}", "t=0 0"]
    for index, media in enumerate(offer.media):
        if index != chosen.index:
            lines.append(f"m={media.kind} 0 {media.proto} {' '.join(media.formats) or '0'}")
            continue
        formats = [str(chosen.payload_type)] + ([str(chosen.dtmf_payload_type)] if chosen.dtmf_payload_type is not None else [])
        lines.append(f"m=audio {local_port} RTP/AVP {' '.join(formats)}")
        lines.append(f"a=rtpmap:{chosen.payload_type} {chosen.codec}/8000")
        if chosen.dtmf_payload_type is not None:
            lines.append(f"a=rtpmap:{chosen.dtmf_payload_type} telephone-event/8000")
            lines.append(f"a=fmtp:{chosen.dtmf_payload_type} 0-15")
        lines.append("a=ptime:20")
        lines.append(f"a={chosen.direction}")
    return "\r\n".join(lines) + "\r\n"


def build_offer(local_ip: str, local_port: int, session_id: int, dtmf_payload_type: int = 101) -> str:
    """Our offer for an outbound leg (a bridged transfer): PCMU, PCMA and telephone-event."""
    family = "IP6" if ":" in local_ip else "IP4"
    return "\r\n".join([
        "v=0", f"o=voicebot {session_id} 1 IN {family} {local_ip}", "s=voicebot", f"c=IN {family} {local_ip}", "t=0 0",
        f"m=audio {local_port} RTP/AVP 0 8 {dtmf_payload_type}", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
        f"a=rtpmap:{dtmf_payload_type} telephone-event/8000", f"a=fmtp:{dtmf_payload_type} 0-15", "a=ptime:20",
        "a=sendrecv"]) + "\r\n"


def sdp_body(content_type: str, body: bytes) -> bytes | None:
    """The SDP in a request body: the body itself, or the application/sdp part of a multipart
    body (SIP-I/SIP-T trunks send SDP alongside ISUP).  None when there is no SDP."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/sdp":
        return body
    if not kind.startswith("multipart/"):
        return None
    from email.parser import BytesParser
    from email.policy import compat32

    message = BytesParser(policy=compat32).parsebytes(b"Content-Type: " + content_type.encode("utf-8", "replace")
                                                      + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    for part in message.walk():
        if part.get_content_type() == "application/sdp":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None
