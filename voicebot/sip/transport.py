"""SIP's transport: UDP datagrams and TCP streams on one address, bytes in and out.  It parses,
answers what does not parse when the bytes name enough to address an answer to, and hands
every message on; one bad datagram or connection never reaches further than here.

TCP connections are limited before anything is kept for them (``ConnectionLimiter``: in all
and per source address; one over is closed at once), and one that has brought no complete
message for ``idle_timeout_s`` is closed unless a call's signalling goes over it (``busy``):
a half-sent message held open, or a connection opened and left, costs nothing for long."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import Counter

from voicebot.sip.access import ConnectionLimiter
from voicebot.sip.dialog import REASONS
from voicebot.sip.message import SipMessage, SipParseError, SipResponse, StreamParser, parse

log = logging.getLogger(__name__)

SIP_MESSAGES = Counter("voicebot_sip_messages_total", "SIP messages by outcome", ["kind"])
MAX_ECHO_LINES = 64
Address = tuple[str, int]
Deliver = Callable[[SipMessage, Address, bool], None]  # message, source, reliable (TCP)


class SipTransport(asyncio.DatagramProtocol):
    def __init__(self, deliver: Deliver, connections: ConnectionLimiter | None = None, idle_timeout_s: float = 120.0,
                 busy: Callable[[Address], bool] = lambda _addr: False) -> None:
        self.deliver = deliver
        self.connections = connections or ConnectionLimiter()
        self.idle_timeout_s = idle_timeout_s
        self.busy = busy  # whether a call's signalling goes over the connection from this address
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._tcp_writers: dict[Address, asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int, tcp: bool) -> int:
        """Listen on UDP (and TCP on the same port number); the port we got.  With ``port`` 0,
        a port whose TCP twin is taken is given back and another one tried."""
        for attempt in range(20):
            transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: self, local_addr=(host, port))
            if not tcp:
                break
            try:
                self._tcp_server = await asyncio.start_server(self._tcp_connection, host, self.port)
                break
            except OSError:
                if port != 0 or attempt == 19:
                    transport.close()
                    raise
                transport.close()
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
        if not self.connections.admit(peer[0]):
            SIP_MESSAGES.labels("tcp_refused").inc()
            writer.close()
            return
        self._tcp_writers[peer] = writer
        parser = StreamParser()
        loop = asyncio.get_running_loop()
        heard = loop.time()  # when the last complete message came
        try:
            while True:
                left = heard + self.idle_timeout_s - loop.time()
                if left <= 0:
                    if not self.busy(peer):
                        SIP_MESSAGES.labels("tcp_idle_closed").inc()
                        log.info("SIP/TCP: closing %s: idle", peer)
                        break
                    heard, left = loop.time(), self.idle_timeout_s
                try:
                    data = await asyncio.wait_for(reader.read(65536), left)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    break
                for message in parser.feed(data):
                    heard = loop.time()
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
            self.connections.release(peer[0])
            if self._tcp_writers.get(peer) is writer:
                del self._tcp_writers[peer]
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
