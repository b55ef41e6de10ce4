"""A mutation fuzzer for the SIP endpoint's real receive path.  Every input goes, as one UDP
datagram and as a TCP stream arriving in pieces, into a ``SipEndpoint``'s transport
(``datagram_received`` and its TCP connection handler) with a stand-in call owner and media
without sockets: so parsing, the answer to what does not parse, access control and digest,
the transaction layer, dialog matching, INVITE, re-INVITE, ACK, CANCEL, BYE and NOTIFY
handling and SDP offer/answer all see it.  UDP input comes from an allowed address, TCP
input from one that must authenticate.  Before each input the endpoint holds one answered
and confirmed call (``CALL_ID``, the caller's tag ``PEER_TAG``, ours ``LOCAL_TAG``), so
mutants of the requests in its dialog reach dialog matching.

An input is a problem when anything raises (the endpoint's last line of defence logs it, or a
task it started ends in an exception), when something the endpoint sends does not parse, or
when the established call changed although the input does not carry its Call-ID and both its
tags (a stranger touched the call).  Seeds are the messages kept in tests/sip/corpus plus
requests in the established call's dialog; any input that is a problem is saved to
tests/sip/corpus/fuzz/ and from then on replayed by the test suite.  With ``--grow`` it is
coverage-guided: a mutant that reaches lines of voicebot/sip no earlier input reached is kept
as a seed and saved to the corpus too.

    python -m tests.sip.fuzz --iterations 200000 [--seed N] [--grow] [--minutes M]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from voicebot.legs import CallerLeg
from voicebot.sip.auth import digest_response, parse_digest
from voicebot.sip.call import SipCall, new_rtp
from voicebot.sip.config import SipConfig
from voicebot.sip.endpoint import SipEndpoint
from voicebot.sip.message import SipParseError, StreamParser, parse
from voicebot.sip.rtp import RtpSession
from voicebot.sip.sdp import Negotiated

CORPUS = Path(__file__).parent / "corpus"
FOUND = CORPUS / "fuzz"
INTERESTING = [b"\r\n", b"\n", b" ", b"\t", b'"', b"\\", b"<", b">", b";", b",", b":", b"%", b"=", b"[", b"]",
               b"\x00", b"\xff", b"\r\n ", b"4294967296", b"-1", b"99999999999999999999", b"SIP/2.0", b"@",
               b";tag=", b"z9hG4bK", b"fuzzcall", b"fuzzpeer", b"fuzzlocal"]

UDP_SOURCE = ("127.0.0.1", 5999)  # the established call's caller, and an allowed address
TCP_SOURCE = ("192.0.2.7", 5070)  # off the allow-list: must authenticate
CALL_ID, PEER_TAG, LOCAL_TAG = "fuzzcall@127.0.0.1", "fuzzpeer", "fuzzlocal"
USER, PASSWORD = "trunk1", "fuzz-pw"
SDP = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n")


def message(method: str, *, call_id: str = CALL_ID, from_tag: str | None = PEER_TAG, to_tag: str | None = LOCAL_TAG,
            cseq: int = 2, branch: str | None = None, body: str = "", extra: str = "", transport: str = "UDP",
            uri: str = "sip:bank@127.0.0.1") -> bytes:
    """A request from the established call's caller (other tags or Call-ID: from a stranger)."""
    content = f"Content-Type: application/sdp\r\n" if body.startswith("v=") else ""
    if body.startswith("SIP/"):
        content = "Content-Type: message/sipfrag\r\nEvent: refer\r\nSubscription-State: active\r\n"
    return (f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:5999;branch={branch or 'z9hG4bK' + method.lower() + str(cseq)};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: \"Caller\" <sip:+15550001@127.0.0.1>{';tag=' + from_tag if from_tag else ''}\r\n"
            f"To: <sip:bank@127.0.0.1>{';tag=' + to_tag if to_tag else ''}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} {method}\r\nContact: <sip:caller@127.0.0.1:5999>\r\n{extra}{content}"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


ESTABLISH = message("INVITE", to_tag=None, cseq=1, branch="z9hG4bKfuzzinvite", body=SDP.format(port=40000))
DIALOG_SEEDS = [
    message("BYE"),
    message("BYE", from_tag="stranger"),
    message("BYE", to_tag=None),
    message("INVITE", body=SDP.format(port=41000)),  # a re-INVITE moving the media
    message("INVITE", body=SDP.format(port=41000).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0")),  # hold
    message("INVITE"),  # offerless re-INVITE: the ACK answers
    message("ACK", cseq=1, body=SDP.format(port=41002)),
    message("ACK", cseq=2, to_tag="stranger"),
    message("NOTIFY", body="SIP/2.0 200 OK\r\n"),
    message("INFO", extra="Content-Type: application/dtmf-relay\r\n", body="Signal=5\r\nDuration=160\r\n"),
    message("CANCEL", to_tag=None, cseq=1, branch="z9hG4bKfuzzinvite"),
    message("INVITE", to_tag=None, cseq=1, branch="z9hG4bKother", body=SDP.format(port=40000)),  # a reused Call-ID
    message("INVITE", call_id="new@127.0.0.1", to_tag=None, cseq=1, body=""),  # a delayed offer
    message("OPTIONS", call_id="opt@127.0.0.1", to_tag=None, cseq=1),
    message("BYE", cseq=0),  # out of order
]


def seeds() -> list[bytes]:
    found = [p.read_bytes() for p in sorted(FOUND.glob("*.bin"))]
    torture = [p.read_text().replace("\n", "\r\n").encode() for p in sorted((CORPUS / "torture").glob("*.sip"))]
    return torture + DIALOG_SEEDS + [_harness().authenticated_invite()] + found


def quiet_media(config: SipConfig, chosen: Negotiated | None) -> RtpSession:
    """A call's RTP as the endpoint makes it, but opening no socket and sending nothing."""
    rtp = new_rtp(config, chosen)

    async def open_(host: str, port_range: tuple[int, int] = (40000, 49998)) -> int:
        rtp.local_port = 40000
        return 40000

    rtp.open = open_  # type: ignore[method-assign]
    return rtp


class Sent(asyncio.DatagramTransport):
    """The UDP socket's stand-in: what the endpoint sends is kept."""

    def __init__(self, out: list[bytes]) -> None:
        super().__init__()
        self.out = out

    def sendto(self, data: bytes, addr: Any = None) -> None:  # type: ignore[override]
        self.out.append(bytes(data))

    def close(self) -> None:
        pass


class Writer:
    """A TCP connection's writing half, for the transport's connection handler."""

    def __init__(self, out: bytearray) -> None:
        self.out = out

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return TCP_SOURCE if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.out += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


class Problems(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.found.append("".join(traceback.format_exception(*record.exc_info)))
        else:
            self.found.append(record.getMessage())


class Harness:
    """One endpoint, reused: each input finds it holding just the established call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.tasks: list[asyncio.Task[Any]] = []
        self.loop.set_task_factory(self._task)
        self.udp_out: list[bytes] = []  # what the endpoint sent over UDP for the last input
        self.tcp_out = b""  # and over its TCP connection
        self.problems = Problems()
        self.legs: list[CallerLeg] = []
        config = SipConfig(port=5060, max_calls=4, max_setups_per_s=1e9, max_setups_per_source_per_s=1e9,
                           allowed_networks=["127.0.0.0/8"], credentials={USER: PASSWORD}, answer_after_s=0)
        self.endpoint = SipEndpoint(config, self._start_call, can_take=lambda: len(self.legs) < 3)
        self.endpoint.new_media = quiet_media
        self.endpoint.transport._udp = Sent(self.udp_out)
        self.call: SipCall | None = None
        self.fingerprint: tuple[Any, ...] = ()

    def _task(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self.tasks.append(task)
        return task

    def _start_call(self, leg: CallerLeg) -> str:
        self.legs.append(leg)
        return f"fuzz-{len(self.legs)}"

    def authenticated_invite(self) -> bytes:
        """An INVITE over TCP with a correct digest answer for this process's nonce key."""
        auth = next(iter(self.endpoint.access._auth.values()))
        nonce = parse_digest(auth.challenge()[0])["nonce"]
        uri = "sip:bank@127.0.0.1"
        answer = digest_response("SHA-256", USER, auth.realm, PASSWORD, "INVITE", uri, nonce, "auth", "00000001", "cn")
        header = (f'Authorization: Digest username="{USER}", realm="{auth.realm}", nonce="{nonce}", uri="{uri}", '
                  f'response="{answer}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="cn"\r\n')
        return message("INVITE", call_id="auth@192.0.2.7", to_tag=None, cseq=1, transport="TCP", extra=header,
                       body=SDP.format(port=40010))

    # ------------------------------------------------------------------ one input

    def check(self, data: bytes) -> str | None:
        logger = logging.getLogger("voicebot.sip")
        propagate, logger.propagate = logger.propagate, False  # thousands of inputs: keep the test's log small
        logger.addHandler(self.problems)
        try:
            for tcp in (False, True):
                problem = self.loop.run_until_complete(self._feed(data, tcp))
                if problem is not None:
                    return problem
            return None
        finally:
            logger.removeHandler(self.problems)
            logger.propagate = propagate

    async def _feed(self, data: bytes, tcp: bool) -> str | None:
        await self._baseline()
        self.problems.found.clear()
        if tcp:
            out = bytearray()
            reader = asyncio.StreamReader()
            for i in range(0, len(data), 97):  # the same bytes arriving in pieces
                reader.feed_data(data[i:i + 97])
            reader.feed_eof()
            await self.endpoint.transport._tcp_connection(reader, Writer(out))  # type: ignore[arg-type]
        else:
            self.endpoint.transport.datagram_received(data, UDP_SOURCE)
        await self._settle()
        self.tcp_out = bytes(out) if tcp else b""
        return self._failures() or self._unreadable(self.udp_out, self.tcp_out) or self._touched(data)

    async def _settle(self) -> None:
        """Let what the input started run (answering a call), then stop what would wait on
        (a BYE retransmitted until answered)."""
        for _ in range(4):
            await asyncio.sleep(0)
        pending = [t for t in self.tasks if not t.done() and t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _failures(self) -> str | None:
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.tasks = [t for t in self.tasks if not t.done()]
        return self.problems.found[0] if self.problems.found else None

    def _unreadable(self, datagrams: list[bytes], stream: bytes) -> str | None:
        """Everything we send must itself parse (an unreadable answer is our bug)."""
        for data in datagrams:
            try:
                parse(data)
            except SipParseError as exc:
                return f"we sent a datagram that does not parse ({exc.reason}):\n{data[:400]!r}"
        parser = StreamParser()
        parser.feed(stream)
        if parser.error is not None:
            return f"we sent a TCP stream that does not parse ({parser.error.reason}):\n{stream[:400]!r}"
        return None

    def _touched(self, data: bytes) -> str | None:
        if self._fingerprint() == self.fingerprint:
            return None
        if all(mark.encode() in data for mark in (CALL_ID, PEER_TAG, LOCAL_TAG)):
            return None  # the dialog's own request may change it
        return f"the established call changed without its Call-ID and tags: {self.fingerprint} -> {self._fingerprint()}"

    # ------------------------------------------------------------------ the state each input starts from

    def _fingerprint(self) -> tuple[Any, ...]:
        call = self.endpoint.calls.get(CALL_ID)
        if call is None:
            return ("gone",)
        rtp = call.rtp
        return (id(call), call.dialog.state, call.dialog.remote_cseq, call.awaiting_answer, call.started,
                rtp.signalled, rtp.on_hold, rtp.sender.codec, rtp.closed, rtp.released)

    async def _baseline(self) -> None:
        ep = self.endpoint
        for call_id, call in list(ep.calls.items()):
            if call is not self.call:
                del ep.calls[call_id]
                await call.rtp.release()
        ep._answering.clear()
        ep._responses.clear()
        ep._notify.clear()
        ep.transactions.table.clear()
        ep.source_setups.buckets.clear()
        del self.legs[1:]
        if self.call is None or self._fingerprint() != self.fingerprint:
            ep.calls.pop(CALL_ID, None)
            if self.call is not None:
                await self.call.rtp.release()
            self.legs.clear()
            await self._establish()
        ep.transactions.table.clear()
        self.udp_out.clear()

    async def _establish(self) -> None:
        ep = self.endpoint
        ep.transport.datagram_received(ESTABLISH, UDP_SOURCE)
        for _ in range(10):
            await asyncio.sleep(0)
            if CALL_ID in ep.calls and ep.calls[CALL_ID].answered:
                break
        call = ep.calls[CALL_ID]
        call.dialog.local_tag = LOCAL_TAG  # a known tag, so the seeds can be in its dialog
        ep.transport.datagram_received(message("ACK", cseq=1, branch="z9hG4bKfuzzack"), UDP_SOURCE)
        await self._settle()
        assert call.started and self._failures() is None, "the fuzzer could not set up its call"
        self.call = call
        self.fingerprint = self._fingerprint()


_HARNESS: Harness | None = None


def _harness() -> Harness:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = Harness()
    return _HARNESS


def check(data: bytes) -> str | None:
    """None when the endpoint took the input in its stride; else what went wrong."""
    try:
        return _harness().check(data)
    except Exception:  # the harness itself tripped over the input: report it as found
        return traceback.format_exc()


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        kind = rng.randrange(8)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            data[at:at] = rng.choice(INTERESTING)
        elif kind == 2:
            del data[at:at + rng.randint(1, 40)]
        elif kind == 3:
            chunk = data[at:at + rng.randint(1, 80)]
            data[at:at] = chunk * rng.randint(1, 20)
        elif kind == 4:
            other = rng.choice(pool)
            start = rng.randrange(len(other) + 1)
            data[at:] = other[start:]
        elif kind == 5:
            lines = bytes(data).split(b"\r\n")
            rng.shuffle(lines[1:rng.randint(2, max(2, len(lines)))])
            data = bytearray(b"\r\n".join(lines))
        elif kind == 6:
            data = data[:at]
        else:
            digits = [i for i, b in enumerate(data) if 48 <= b <= 57]
            if digits:
                i = rng.choice(digits)
                data[i:i + 1] = rng.choice([b"0", b"99999999999", b"-1", b"00000000000000000000001", b""])
    return bytes(data)


def lines_reached(data: bytes) -> set[tuple[str, int]]:
    """The (file, line) pairs of voicebot/sip that handling ``data`` executes."""
    sip_dir = str(Path(__file__).resolve().parents[2] / "voicebot" / "sip")
    reached: set[tuple[str, int]] = set()

    def local(frame, event, arg):  # type: ignore[no-untyped-def]
        if event == "line":
            reached.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def calls(frame, event, arg):  # type: ignore[no-untyped-def]
        return local if frame.f_code.co_filename.startswith(sip_dir) else None

    sys.settrace(calls)
    try:
        check(data)
    finally:
        sys.settrace(None)
    return reached


def run(iterations: int, seed: int = 0, grow: bool = False,
        minutes: float | None = None) -> tuple[list[tuple[bytes, str]], list[bytes]]:
    """Crashes found, and (with ``grow``) the mutants that reached new code."""
    rng = random.Random(seed)
    pool = seeds()
    crashes, grown = [], []
    seen: set[tuple[str, int]] = set()
    if grow:
        for data in pool:
            seen |= lines_reached(data)
    deadline = None if minutes is None else time.monotonic() + minutes * 60
    for _ in range(iterations):
        if deadline is not None and time.monotonic() > deadline:
            break
        data = mutate(rng, rng.choice(pool), pool)
        problem = check(data)
        if problem is not None:
            crashes.append((data, problem))
        elif grow:
            new = lines_reached(data) - seen
            if new:
                seen |= new
                pool.append(data)
                grown.append(data)
    return crashes, grown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=random.randrange(2 ** 32))
    parser.add_argument("--grow", action="store_true", help="keep mutants that reach new code in the corpus")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long")
    args = parser.parse_args()
    crashes, grown = run(args.iterations, args.seed, args.grow, args.minutes)
    FOUND.mkdir(exist_ok=True)
    for data, problem in crashes:
        path = FOUND / f"crash-{hashlib.sha1(data).hexdigest()[:12]}.bin"
        path.write_bytes(data)
        print(f"{path}:\n{problem}")
    for data in grown:
        (FOUND / f"cov-{hashlib.sha1(data).hexdigest()[:12]}.bin").write_bytes(data)
    print(f"seed {args.seed}: {len(crashes)} inputs broke the endpoint, {len(grown)} reached new code")


if __name__ == "__main__":
    main()
