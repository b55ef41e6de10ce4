"""SIP's transport: UDP datagrams and TCP streams on one address, bytes in and out.  It parses,
answers what does not parse when the bytes name enough to address an answer to, and hands
every message on; one bad datagram or connection never reaches further than here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import Counter

from voicebot.sip.dialog import REASONS
from voicebot.sip.message import SipMessage, SipParseError, SipResponse, StreamParser, parse

log = logging.getLogger(__name__)

SIP_MESSAGES = Counter("voicebot_sip_messages_total", "SIP messages by outcome", ["kind"])
MAX_ECHO_LINES = 64
Address = tuple[str, int]
Deliver = Callable[[SipMessage, Address, bool], None]  # message, source, reliable (TCP)


class SipTransport(asyncio.DatagramProtocol):
    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: dict[Address, asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int, tcp: bool) -> int:
        """Listen on UDP (and TCP on the same port number); the port we got."""
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=(host, port))
        if tcp:
            self._tcp_server = await asyncio.start_server(self._tcp_connection, host, self.port)
        return self.port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._udp = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            self._datagram(data, addr)
        except Exception:  # the last line of defence: log, count, keep serving
            SIP_MESSAGES.labels("internal_error").inc()
            log.exception("SIP: failed to handle a datagram from %s", addr)

    def send(self, data: bytes, addr: Address) -> None:
        """Back the way the peer came: its TCP connection if it has one, else UDP."""
        writer = self._tcp_writers.get(addr)
        if writer is not None:
            writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, addr)

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        for writer in list(self._tcp_writers.values()):
            writer.close()

    def _datagram(self, data: bytes, addr: Address) -> None:
        if not data.strip(b"\r\n \x00"):
            return  # keep-alive
        try:
            message = parse(data)
        except SipParseError as exc:
            SIP_MESSAGES.labels("malformed").inc()
            log.info("SIP: malformed message from %s: %s", addr, exc.reason)
            reply = malformed_reply(data, exc)
            if reply is not None:
                self.send(reply, addr)
            return
        self.deliver(message, addr, False)

    async def _tcp_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One TCP connection: Content-Length framing; responses go back the same way."""
        peer = writer.get_extra_info("peername")[:2]
        self._tcp_writers[peer] = writer
        parser = StreamParser()
        try:
            while data := await reader.read(65536):
                for message in parser.feed(data):
                    try:
                        self.deliver(message, peer, True)
                    except Exception:
                        SIP_MESSAGES.labels("internal_error").inc()
                        log.exception("SIP/TCP: failed to handle a message from %s", peer)
                await writer.drain()
                if parser.error is not None:
                    SIP_MESSAGES.labels("malformed").inc()
                    log.info("SIP/TCP: closing %s: %s", peer, parser.error.reason)
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tcp_writers.pop(peer, None)
            writer.close()


def malformed_reply(data: bytes, exc: SipParseError) -> bytes | None:
    """The answer to a broken request when it names enough (Via, From, To, Call-ID, CSeq) to
    address one; None otherwise.  Never answers responses or ACKs."""
    if exc.status == 0 or data[:4].upper() == b"SIP/":
        return None
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    first, _, rest = head.partition("\r\n")
    if first.split(" ", 1)[0].upper() == "ACK":
        return None
    wanted = {"via": "Via", "v": "Via", "from": "From", "f": "From", "to": "To", "t": "To",
              "call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}
    response = SipResponse(exc.status, REASONS.get(exc.status, "Bad Request"))
    found = set()
    for line in rest.split("\r\n")[:MAX_ECHO_LINES]:
        name, sep, value = line.partition(":")
        key = wanted.get(name.strip().lower())
        if sep and key and len(value) < 1024 and _printable(value):  # echo nothing that would split our answer
            response.headers.add(key, value.strip())
            found.add(key)
    if found != {"Via", "From", "To", "Call-ID", "CSeq"}:
        return None
    reason = "".join(c if _printable(c) and c not in '"\\' else "?" for c in exc.reason[:100])
    response.headers.add("Warning", f'399 voicebot "{reason}"')
    return response.encode()


def _printable(text: str) -> bool:
    """No control characters (a bare CR or LF in a header value would start a new line)."""
    return not any(ord(c) < 32 and c != "\t" or ord(c) == 127 for c in text)
