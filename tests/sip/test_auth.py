"""Digest authentication with known answers (RFC 8760's SHA-256 and the MD5 of RFC 2617), and
with bytes: a nonce-count is good once, the digest names the Request-URI, nonces expire, MD5
can be switched off, and what is remembered stays bounded."""

import pytest

from voicebot.sip.access import AccessPolicy, Trunk
from voicebot.sip.auth import DigestAuthenticator, check_algorithms, digest_response, parse_digest
from voicebot.sip.message import SipRequest, parse

URI = "sip:bank@127.0.0.1"


def authorization(auth: DigestAuthenticator, algorithm: str, password: str, now: float, nonce: str | None = None,
                  nc: str = "00000001", uri: str = URI, qop: str | None = "auth") -> str:
    challenge = next(c for c in auth.challenge(now) if f"algorithm={algorithm}" in c)
    nonce = nonce or parse_digest(challenge)["nonce"]
    response = digest_response(algorithm, "trunk1", "voicebot", password, "INVITE", uri, nonce, qop, nc, "abc")
    quality = f', qop={qop}, nc={nc}, cnonce="abc"' if qop else ""
    return (f'Digest username="trunk1", realm="voicebot", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm={algorithm}{quality}')


def test_known_md5_answer() -> None:
    # RFC 2617 §3.5's worked example (qop=auth)
    assert digest_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                           "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001",
                           "0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_sha256_and_md5_accepted_wrong_password_refused() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    now = 1_000_000.0
    assert [c.split("algorithm=")[1].split(",")[0] for c in auth.challenge(now)] == ["SHA-256", "MD5"]
    assert auth.verify("INVITE", URI, authorization(auth, "SHA-256", "s3cret", now), now) == "ok"
    assert auth.verify("INVITE", URI, authorization(auth, "MD5", "s3cret", now), now) == "ok"
    assert auth.verify("INVITE", URI, authorization(auth, "SHA-256", "wrong", now), now) == "bad"
    assert auth.verify("INVITE", URI, None, now) == "missing"


def test_every_challenge_has_its_own_nonce() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    nonces = {parse_digest(auth.challenge(5.0)[0])["nonce"] for _ in range(50)}
    assert len(nonces) == 50  # two callers challenged in one second never share a count


def test_stale_and_forged_nonces() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"}, nonce_ttl_s=60)
    old = authorization(auth, "SHA-256", "s3cret", 1000.0)
    assert auth.verify("INVITE", URI, old, 1100.0) == "stale"  # expired
    assert auth.verify("INVITE", URI, old, 990.0) == "stale"  # from the future
    forged = authorization(auth, "SHA-256", "s3cret", 1000.0, nonce="1000.deadbeefdeadbeefdeadbeef")
    assert auth.verify("INVITE", URI, forged, 1000.0) == "bad"
    resigned = authorization(auth, "SHA-256", "s3cret", 1000.0, nonce="1000.abc.deadbeefdeadbeefdeadbeef")
    assert auth.verify("INVITE", URI, resigned, 1000.0) == "bad"
    assert auth.verify("INVITE", URI, 'Basic dHJ1bmsxOnMzY3JldA==', 1000.0) == "bad"
    assert auth.verify("INVITE", URI, 'Digest username="x", garbage', 1000.0) == "bad"


def test_a_nonce_count_is_good_once() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    first = authorization(auth, "SHA-256", "s3cret", 500.0)
    nonce = parse_digest(first)["nonce"]
    assert auth.verify("INVITE", URI, first, 500.0) == "ok"
    assert auth.verify("INVITE", URI, first, 501.0) == "stale"  # the same Authorization again: a replay
    second = authorization(auth, "SHA-256", "s3cret", 500.0, nonce=nonce, nc="00000002")
    assert auth.verify("INVITE", URI, second, 502.0) == "ok"  # the client's next request on that nonce
    assert auth.verify("INVITE", URI, first, 503.0) == "stale"  # an older count stays refused
    wrong = authorization(auth, "SHA-256", "wrong", 500.0, nonce=nonce, nc="00000009")
    assert auth.verify("INVITE", URI, wrong, 504.0) == "bad"  # a wrong answer proves nothing, counts nothing
    assert auth.verify("INVITE", URI, authorization(auth, "SHA-256", "s3cret", 500.0, nonce=nonce,
                                                    nc="00000003"), 505.0) == "ok"


def test_without_qop_a_nonce_is_good_once() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    plain = authorization(auth, "MD5", "s3cret", 500.0, qop=None)
    assert auth.verify("INVITE", URI, plain, 500.0) == "ok"
    assert auth.verify("INVITE", URI, plain, 500.0) == "stale"


@pytest.mark.parametrize("nc", ["1", "0000000g", "000000001", ""])
def test_qop_needs_a_well_formed_count(nc: str) -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    assert auth.verify("INVITE", URI, authorization(auth, "SHA-256", "s3cret", 500.0, nc=nc), 500.0) == "bad"


def test_the_digest_must_name_the_request_uri() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    elsewhere = authorization(auth, "SHA-256", "s3cret", 500.0, uri="sip:premium@127.0.0.1")
    assert auth.verify("INVITE", URI, elsewhere, 500.0) == "bad"  # a correct answer, for another request
    assert auth.verify("INVITE", "sip:premium@127.0.0.1", elsewhere, 500.0) == "ok"


def test_md5_can_be_switched_off() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"}, algorithms=("SHA-256",))
    assert [parse_digest(c)["algorithm"] for c in auth.challenge(500.0)] == ["SHA-256"]
    md5 = authorization(DigestAuthenticator("voicebot", {"trunk1": "s3cret"}, key=auth.key), "MD5", "s3cret", 500.0)
    assert auth.verify("INVITE", URI, md5, 500.0) == "bad"
    no_algorithm = md5.replace(", algorithm=MD5", "")  # RFC 2617: no algorithm means MD5
    assert auth.verify("INVITE", URI, no_algorithm, 500.0) == "bad"
    assert auth.verify("INVITE", URI, authorization(auth, "SHA-256", "s3cret", 500.0), 500.0) == "ok"


def test_algorithm_names_are_checked_and_ordered_strongest_first() -> None:
    assert check_algorithms(["MD5", "SHA-256"]) == ("SHA-256", "MD5")
    for bad in ([], ["SHA-1"], ["sha256"]):
        with pytest.raises(ValueError):
            check_algorithms(bad)
    policy = AccessPolicy([Trunk("t", credentials={"trunk1": "s3cret"})], algorithms=("SHA-256",))
    verdict = policy.check("198.51.100.1", "INVITE", URI, None)
    assert [parse_digest(c)["algorithm"] for c in verdict.challenge] == ["SHA-256"]


def test_what_is_remembered_stays_bounded_and_never_lets_a_replay_in() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"}, nonce_ttl_s=100, max_nonces=50)
    used = []
    for i in range(200):  # 200 calls, each on a fresh nonce, within one TTL
        header = authorization(auth, "SHA-256", "s3cret", 1000.0 + i / 4)
        assert auth.verify("INVITE", URI, header, 1000.0 + i / 4) == "ok"
        used.append(header)
        assert len(auth._counts) <= 50
    assert all(auth.verify("INVITE", URI, header, 1060.0) == "stale" for header in used)  # forgotten ones too
    later = authorization(auth, "SHA-256", "s3cret", 1500.0)
    assert auth.verify("INVITE", URI, later, 1500.0) == "ok" and len(auth._counts) == 1  # expired ones went


def test_a_replayed_invite_from_bytes_is_challenged_as_stale() -> None:
    policy = AccessPolicy([Trunk("t", credentials={"trunk1": "s3cret"})])
    nonce = parse_digest(policy.check("198.51.100.1", "INVITE", URI, None).challenge[0])["nonce"]
    answer = digest_response("SHA-256", "trunk1", "voicebot", "s3cret", "INVITE", URI, nonce, "auth", "00000001", "c")
    captured = parse((f"INVITE {URI} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK1\r\n"
                      "From: <sip:a@b>;tag=1\r\nTo: <sip:bank@127.0.0.1>\r\nCall-ID: r1\r\nCSeq: 2 INVITE\r\n"
                      f'Authorization: Digest username="trunk1", realm="voicebot", nonce="{nonce}", uri="{URI}", '
                      f'response="{answer}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c"\r\n'
                      "Content-Length: 0\r\n\r\n").encode())
    assert isinstance(captured, SipRequest)

    def check(request: SipRequest) -> str:
        verdict = policy.check("198.51.100.1", request.method, request.uri, request.headers.get("Authorization"))
        return verdict.decision + (" stale" if any("stale=true" in c for c in verdict.challenge) else "")

    assert check(captured) == "allow"
    assert check(captured) == "challenge stale"  # the same bytes again
    captured.uri = "sip:other@127.0.0.1"
    assert check(captured) == "forbid"  # moved onto another Request-URI
