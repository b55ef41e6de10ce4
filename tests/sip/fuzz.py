"""A mutation fuzzer for everything a SIP datagram passes through before a call exists:
message parsing (datagram and stream framing), the answer to what does not parse, Via and
name-addr parsing, multipart bodies, SDP and offer/answer.  Seeds are the messages kept in tests/sip/corpus; any input that makes a
parser fail with anything but its own error is saved to tests/sip/corpus/fuzz/ and from then
on replayed by the test suite.  With ``--grow`` it is coverage-guided: a mutant that reaches
lines of voicebot/sip no earlier input reached is kept as a seed and saved to the corpus too.

    python -m tests.sip.fuzz --iterations 200000 [--seed N] [--grow]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import traceback
from pathlib import Path

from voicebot.sip.message import SipParseError, SipRequest, StreamParser, parse, parse_name_addr, parse_via, split_list
from voicebot.sip.sdp import NotAcceptable, SdpError, negotiate, parse_sdp, sdp_body
from voicebot.sip.transport import malformed_reply

CORPUS = Path(__file__).parent / "corpus"
FOUND = CORPUS / "fuzz"
EXPECTED_ERRORS = (SipParseError, SdpError, NotAcceptable)
INTERESTING = [b"\r\n", b"\n", b" ", b"\t", b'"', b"\\", b"<", b">", b";", b",", b":", b"%", b"=", b"[", b"]",
               b"\x00", b"\xff", b"\r\n ", b"4294967296", b"-1", b"99999999999999999999", b"SIP/2.0", b"@"]


def seeds() -> list[bytes]:
    found = [p.read_bytes() for p in sorted(FOUND.glob("*.bin"))]
    torture = [p.read_text().replace("\n", "\r\n").encode() for p in sorted((CORPUS / "torture").glob("*.sip"))]
    return torture + found


def receive(data: bytes) -> None:
    """What the endpoint does with a datagram's bytes before any call state, minus the sockets."""
    for message in _messages(data):
        for via in message.headers.get_all("Via"):
            parse_via(via)
        for name in ("From", "To", "Refer-To", "Referred-By"):
            value = message.headers.get(name)
            if value:
                parse_name_addr(value)
        for contact in split_list(message.headers.get("Contact") or ""):
            if contact != "*":
                parse_name_addr(contact)
        if isinstance(message, SipRequest) and message.body:
            sdp = sdp_body(message.headers.get("Content-Type") or "", message.body)
            if sdp is not None:
                negotiate(parse_sdp(sdp.decode("utf-8", "replace")))


def _messages(data: bytes) -> list:
    out = []
    try:
        out.append(parse(data))
    except SipParseError as exc:
        reply = malformed_reply(data, exc)  # what the transport sends back, when it can
        if reply is not None:
            _readable(reply)
    stream = StreamParser()
    for i in range(0, len(data), 97):  # TCP: the same bytes arriving in pieces
        out += stream.feed(data[i:i + 97])
    return out


def _readable(reply: bytes) -> None:
    """Our answer to a broken request must itself parse (an unreadable one is our bug)."""
    try:
        parse(reply)
    except SipParseError as exc:
        raise AssertionError(f"our answer to a malformed request does not parse: {exc.reason}") from exc


def check(data: bytes) -> str | None:
    """None when every parser either accepted the input or refused it with its own error."""
    try:
        receive(data)
    except EXPECTED_ERRORS:
        pass
    except Exception:  # anything else is a bug in a parser
        return traceback.format_exc()
    return None


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
    """The (file, line) pairs of voicebot/sip that parsing ``data`` executes."""
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


def run(iterations: int, seed: int = 0, grow: bool = False) -> tuple[list[tuple[bytes, str]], list[bytes]]:
    """Crashes found, and (with ``grow``) the mutants that reached new code."""
    rng = random.Random(seed)
    pool = seeds()
    crashes, grown = [], []
    seen: set[tuple[str, int]] = set()
    if grow:
        for data in pool:
            seen |= lines_reached(data)
    for _ in range(iterations):
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
    args = parser.parse_args()
    crashes, grown = run(args.iterations, args.seed, args.grow)
    FOUND.mkdir(exist_ok=True)
    for data, problem in crashes:
        path = FOUND / f"crash-{hashlib.sha1(data).hexdigest()[:12]}.bin"
        path.write_bytes(data)
        print(f"{path}:\n{problem}")
    for data in grown:
        (FOUND / f"cov-{hashlib.sha1(data).hexdigest()[:12]}.bin").write_bytes(data)
    print(f"seed {args.seed}: {args.iterations} inputs, {len(crashes)} broke a parser, {len(grown)} reached new code")


if __name__ == "__main__":
    main()
