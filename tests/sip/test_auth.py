"""Digest authentication with known answers: RFC 8760's SHA-256 and the MD5 of RFC 2617."""

from voicebot.sip.auth import DigestAuthenticator, digest_response, parse_digest


def authorization(auth: DigestAuthenticator, algorithm: str, password: str, now: float, nonce: str | None = None) -> str:
    challenge = next(c for c in auth.challenge(now) if f"algorithm={algorithm}" in c)
    nonce = nonce or parse_digest(challenge)["nonce"]
    response = digest_response(algorithm, "trunk1", "voicebot", password, "INVITE", "sip:bank@127.0.0.1",
                               nonce, "auth", "00000001", "abc")
    return (f'Digest username="trunk1", realm="voicebot", nonce="{nonce}", uri="sip:bank@127.0.0.1", '
            f'response="{response}", algorithm={algorithm}, qop=auth, nc=00000001, cnonce="abc"')


def test_known_md5_answer() -> None:
    # RFC 2617 §3.5's worked example (qop=auth)
    assert digest_response("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
                           "dcd98b7102dd2f0e8b11d0f600bfb0c093", "auth", "00000001",
                           "0a4f113b") == "6629fae49393a05397450978507c4ef1"


def test_sha256_and_md5_accepted_wrong_password_refused() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"})
    now = 1_000_000.0
    assert [c.split("algorithm=")[1].split(",")[0] for c in auth.challenge(now)] == ["SHA-256", "MD5"]
    assert auth.verify("INVITE", authorization(auth, "SHA-256", "s3cret", now), now) == "ok"
    assert auth.verify("INVITE", authorization(auth, "MD5", "s3cret", now), now) == "ok"
    assert auth.verify("INVITE", authorization(auth, "SHA-256", "wrong", now), now) == "bad"
    assert auth.verify("INVITE", None, now) == "missing"


def test_stale_and_forged_nonces() -> None:
    auth = DigestAuthenticator("voicebot", {"trunk1": "s3cret"}, nonce_ttl_s=60)
    old = authorization(auth, "SHA-256", "s3cret", 1000.0)
    assert auth.verify("INVITE", old, 1100.0) == "stale"
    forged = authorization(auth, "SHA-256", "s3cret", 1000.0, nonce="1000.deadbeefdeadbeefdeadbeef")
    assert auth.verify("INVITE", forged, 1000.0) == "bad"
    assert auth.verify("INVITE", 'Basic dHJ1bmsxOnMzY3JldA==', 1000.0) == "bad"
    assert auth.verify("INVITE", 'Digest username="x", garbage', 1000.0) == "bad"
