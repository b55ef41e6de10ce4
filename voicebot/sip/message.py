"""SIP messages (RFC 3261 §7, §20, §25): bytes ⇄ objects, no sockets.

Parsing is liberal where RFC 4475's valid-but-odd messages are (folded headers, compact header
names, odd case and whitespace, bare LF line ends) and strict where a mistake would hurt
(Content-Length, CSeq, the mandatory headers, size limits).  Errors carry the status code a
server should answer with, so the endpoint can reply in protocol instead of crashing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator

MAX_MESSAGE_BYTES = 65535
MAX_HEADERS = 128
MAX_HEADER_BYTES = 8192

COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length", "c": "Content-Type",
    "f": "From", "s": "Subject", "k": "Supported", "t": "To", "v": "Via", "r": "Refer-To", "b": "Referred-By",
    "o": "Event", "u": "Allow-Events", "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity",
}
_CANONICAL = {name.lower(): name for name in [
    *COMPACT.values(), "CSeq", "Max-Forwards", "Record-Route", "Route", "Require", "Proxy-Require", "Unsupported",
    "Allow", "Accept", "User-Agent", "Server", "WWW-Authenticate", "Authorization", "Proxy-Authenticate",
    "Proxy-Authorization", "Retry-After", "Expires", "Min-SE", "Reason", "Warning", "User-to-User", "Date",
    "Timestamp", "Organization", "Priority", "Min-Expires", "Replaces", "Subscription-State", "Refer-Sub",
]}
# Headers whose values may be comma-separated lists (RFC 3261 §7.3.1), safe to split.
MULTI = {"Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require", "Proxy-Require",
         "Unsupported", "Accept", "Allow-Events"}
TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
REQUIRED = ("Via", "To", "From", "Call-ID", "CSeq")
SINGLE = ("To", "From", "Call-ID", "CSeq", "Content-Length", "Max-Forwards", "Content-Type")  # once each
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):\S+$")


class SipParseError(Exception):
    """Malformed input; ``status`` is what a server answers a request with (0: just drop it)."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def canonical(name: str) -> str:
    lowered = name.strip().lower()
    if len(lowered) == 1 and lowered in COMPACT:
        return COMPACT[lowered]
    return _CANONICAL.get(lowered) or "-".join(part.capitalize() for part in lowered.split("-"))


@dataclass
class Headers:
    """Ordered, case-insensitive, repeatable header fields."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical(name)
        return next((v for n, v in self.items if n == key), default)

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        values: list[str] = []
        for n, v in self.items:
            if n == key:
                values += split_list(v) if key in MULTI else [v]
        return values

    def add(self, name: str, value: str) -> None:
        self.items.append((canonical(name), value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical(name)
        self.items = [(n, v) for n, v in self.items if n != key]

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)


class _Identity:
    """Call-ID and CSeq, which requests and responses read alike."""

    headers: Headers

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self.headers.get("CSeq") or "")


@dataclass
class SipRequest(_Identity):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def encode(self) -> bytes:
        return _encode(f"{self.method} {self.uri} {self.version}", self.headers, self.body)


@dataclass
class SipResponse(_Identity):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    def encode(self) -> bytes:
        return _encode(f"{self.version} {self.status} {self.reason}", self.headers, self.body)


SipMessage = SipRequest | SipResponse


def _encode(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines += [f"{n}: {v}" for n, v in headers if n != "Content-Length"]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def split_list(value: str) -> list[str]:
    """Split on commas outside quotes and angle brackets."""
    parts, current, quoted, angle = [], [], False, 0
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            angle += 1
        elif ch == ">" and not quoted and angle:
            angle -= 1
        elif ch == "," and not quoted and not angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10 or not TOKEN.match(parts[1]):
        raise SipParseError(f"bad CSeq {value!r}")
    number = int(parts[0])
    if number >= 2 ** 31:
        raise SipParseError(f"CSeq number out of range in {value!r}")
    return number, parts[1].upper()


def _lines(head: str) -> list[str]:
    """Header lines with folding (continuation lines start with SP/HT) unfolded."""
    out: list[str] = []
    for line in re.split(r"\r?\n", head):
        if line[:1] in (" ", "\t") and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def parse(data: bytes, *, datagram: bool = True) -> SipMessage:
    """Parse one complete message (a UDP datagram, or one frame cut by StreamParser)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError("message too large", 513)
    data = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore leading empty lines (keep-alives)
    match = re.search(rb"\r?\n\r?\n", data)
    if match is None:
        raise SipParseError("no end of headers")
    head_bytes, body = data[: match.start()], data[match.end():]
    try:
        head = head_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("headers are not UTF-8") from None
    lines = _lines(head)
    start, header_lines = lines[0].strip(), lines[1:]
    if len(header_lines) > MAX_HEADERS:
        raise SipParseError("too many headers", 513)
    headers = Headers()
    for line in header_lines:
        if len(line) > MAX_HEADER_BYTES:
            raise SipParseError("header too long", 513)
        name, sep, value = line.partition(":")
        if not sep or not TOKEN.match(name.strip()):
            raise SipParseError(f"malformed header line {line[:60]!r}")
        headers.add(name, value.strip())
    message = _start_line(start, headers)
    length_text = headers.get("Content-Length")
    if length_text is not None:
        if not length_text.isdigit() or len(length_text) > 9:
            raise SipParseError(f"bad Content-Length {length_text!r}")
        length = int(length_text)
        if length > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[:length]  # §18.3: bytes beyond Content-Length are discarded
    elif not datagram:
        raise SipParseError("Content-Length is required on stream transports")
    message.body = body
    if isinstance(message, SipRequest):
        _check_request(message)
    return message


def _start_line(start: str, headers: Headers) -> SipMessage:
    parts = start.split(None, 2)
    if len(parts) == 3 and parts[0].upper().startswith("SIP/"):
        version, code, reason = parts
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported version {version}", 0)
        if not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code {code!r}", 0)
        return SipResponse(int(code), reason, headers, version="SIP/2.0")
    if len(parts) == 2 and parts[0].upper().startswith("SIP/") and parts[1].isdigit():
        return SipResponse(int(parts[1]), "", headers)
    if len(parts) == 3 and len(parts[2].split()) > 1 and parts[2].split()[-1].upper() == "SIP/2.0":
        raise SipParseError(f"whitespace inside the Request-URI in {start[:80]!r}")
    if len(parts) != 3:
        raise SipParseError(f"malformed start line {start[:80]!r}")
    method, uri, version = parts
    if not TOKEN.match(method):
        raise SipParseError(f"bad method {method!r}")
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported version {version}", 505)
    if not SCHEME.match(uri):
        raise SipParseError(f"bad Request-URI {uri!r}")  # also <sip:...> in angle brackets
    return SipRequest(method, uri, headers)


def _check_request(request: SipRequest) -> None:
    for name in REQUIRED:
        if name not in request.headers:
            raise SipParseError(f"missing {name} header")
    for name in SINGLE:
        if len(request.headers.get_all(name)) > 1:
            raise SipParseError(f"more than one {name} header")
    for name in ("From", "To"):
        parse_name_addr(request.headers.get(name) or "")
    for via in request.headers.get_all("Via"):
        parse_via(via)
    contact = request.headers.get("Contact")
    if request.method == "INVITE" and contact is not None:
        parse_name_addr(split_list(contact)[0] if contact.strip() else contact)
    if SCHEME.match(request.uri).group(1).lower() not in ("sip", "sips", "tel"):  # type: ignore[union-attr]
        raise SipParseError(f"unsupported URI scheme in {request.uri!r}", 416)
    number, method = request.cseq
    if method != request.method.upper():
        raise SipParseError(f"CSeq method {method} does not match {request.method}")
    max_forwards = request.headers.get("Max-Forwards")
    if max_forwards is not None and (not max_forwards.isdigit() or int(max_forwards) > 255):
        raise SipParseError(f"bad Max-Forwards {max_forwards!r}")


class StreamParser:
    """Cuts a TCP byte stream into messages by Content-Length.

    ``feed`` returns every complete message; when the stream turns unparseable it sets
    ``error`` (the connection must then be closed: framing is lost) after what came before."""

    def __init__(self) -> None:
        self._buffer = b""
        self.error: SipParseError | None = None

    def feed(self, data: bytes) -> list[SipMessage]:
        messages: list[SipMessage] = []
        if self.error is not None:
            return messages
        self._buffer += data
        try:
            self._cut(messages)
        except SipParseError as exc:
            self.error = exc
            self._buffer = b""
        return messages

    def _cut(self, messages: list[SipMessage]) -> None:
        while True:
            self._buffer = self._buffer.lstrip(b"\r\n")
            match = re.search(rb"\r?\n\r?\n", self._buffer)
            if match is None:
                if len(self._buffer) > MAX_MESSAGE_BYTES:
                    raise SipParseError("headers too large", 513)
                return
            head = self._buffer[: match.start()]
            length_match = re.search(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$", head)
            if length_match is None:
                raise SipParseError("Content-Length is required on stream transports")
            end = match.end() + int(length_match.group(1))
            if end > MAX_MESSAGE_BYTES:
                raise SipParseError("message too large", 513)
            if len(self._buffer) < end:
                return
            frame, self._buffer = self._buffer[:end], self._buffer[end:]
            messages.append(parse(frame, datagram=False))


# --------------------------------------------------------------------------- header values


@dataclass
class NameAddr:
    display: str
    uri: str
    params: dict[str, str | None]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        quoted = self.display.replace("\\", "\\\\").replace('"', '\\"')
        display = f'"{quoted}" ' if self.display else ""
        params = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return f"{display}<{self.uri}>{params}"


def tag_of(value: str | None) -> str | None:
    """The tag parameter of a From or To value (None: no tag, or no readable value)."""
    try:
        return parse_name_addr(value or "").tag
    except SipParseError:
        return None


def parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in split_on(text, ";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        params[key.strip().lower()] = value.strip().strip('"') if sep else None
    return params


def split_on(text: str, sep: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_name_addr(value: str) -> NameAddr:
    """``"Alice" <sip:alice@x>;tag=1`` or ``sip:alice@x;tag=1`` (params then belong to the header)."""
    value = value.strip()
    display = ""
    if value.startswith('"'):  # a quoted display name may hold anything, "<" and "\"" included
        end, escaped = 1, False
        while end < len(value) and (escaped or value[end] != '"'):
            escaped = not escaped and value[end] == "\\"
            end += 1
        if end >= len(value):
            raise SipParseError(f"unterminated quoted display name in {value!r}")
        display = re.sub(r"\\(.)", r"\1", value[1:end])
        value = value[end + 1:].lstrip()
        if not value.startswith("<"):
            raise SipParseError(f"a quoted display name must be followed by <URI> in {value!r}")
    if "<" in value:
        before, _, rest = value.partition("<")
        uri, sep, after = rest.partition(">")
        if not sep:
            raise SipParseError(f"unclosed '<' in {value!r}")
        if before.strip():
            if display or not all(TOKEN.match(word) for word in before.split()):
                raise SipParseError(f"display name {before.strip()!r} must be quoted")
            display = " ".join(before.split())
        if not SCHEME.match(uri):
            raise SipParseError(f"bad URI <{uri}>")
        return NameAddr(display, uri, parse_params(after))
    uri, _, params = value.partition(";")
    if not SCHEME.match(uri.strip()):
        raise SipParseError(f"bad address {value!r}")
    return NameAddr("", uri.strip(), parse_params(params))


@dataclass
class Via:
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")


def parse_via(value: str) -> Via:
    match = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-.!%*_+`'~]+)\s+([^;\s]+)\s*(.*)$", value, re.I)
    if match is None:
        raise SipParseError(f"bad Via {value!r}")
    transport, sent_by, params = match.groups()
    host, port = sent_by, None
    if sent_by.startswith("["):
        host, _, rest = sent_by[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    elif sent_by.count(":") == 1:
        host, _, port_text = sent_by.partition(":")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SipParseError(f"bad Via port in {value!r}")
        port = int(port_text)
    return Via(transport.upper(), host, port, parse_params(params))
