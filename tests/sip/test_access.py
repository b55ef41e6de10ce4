"""Per-trunk access control, pure: source address and Authorization in, a verdict out."""

from __future__ import annotations

import pytest

from voicebot.sip.access import AccessPolicy, Trunk
from voicebot.sip.auth import digest_response, parse_digest

POLICY_TRUNKS = [
    Trunk("pbx", networks=["10.0.0.0/8"]),                                       # trusted by address
    Trunk("carrier", networks=["203.0.113.0/24"], credentials={"carrier1": "c-pw"}),  # address and digest
    Trunk("remote", credentials={"branch7": "r-pw"}),                             # digest from anywhere
]


URI = "sip:bank@voicebot"


def authorization(challenge: str, user: str, password: str, uri: str = URI) -> str:
    params = parse_digest(challenge)
    answer = digest_response(params["algorithm"], user, params["realm"], password, "INVITE", uri, params["nonce"],
                             "auth", "00000001", "c0ffee")
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
            f'response="{answer}", algorithm={params["algorithm"]}, qop=auth, nc=00000001, cnonce="c0ffee"')


def test_a_trusted_network_needs_no_credentials() -> None:
    verdict = AccessPolicy(POLICY_TRUNKS).check("10.1.2.3", "INVITE", URI, None)
    assert (verdict.decision, verdict.trunk) == ("allow", "pbx")


def test_a_trunk_with_both_wants_its_network_and_its_credentials() -> None:
    policy = AccessPolicy(POLICY_TRUNKS)
    first = policy.check("203.0.113.9", "INVITE", URI, None)
    assert (first.decision, first.trunk) == ("challenge", "carrier") and len(first.challenge) == 2
    ok = policy.check("203.0.113.9", "INVITE", URI, authorization(first.challenge[0], "carrier1", "c-pw"))
    assert (ok.decision, ok.trunk) == ("allow", "carrier")
    # another trunk's user, from the carrier's network: not the carrier's credentials
    other = policy.check("203.0.113.9", "INVITE", URI, authorization(first.challenge[0], "branch7", "r-pw"))
    assert other.decision == "forbid"


def test_elsewhere_only_credentials_only_trunks_apply() -> None:
    policy = AccessPolicy(POLICY_TRUNKS)
    first = policy.check("198.51.100.4", "INVITE", URI, None)
    assert (first.decision, first.trunk) == ("challenge", "remote")
    assert policy.check("198.51.100.4", "INVITE", URI, authorization(first.challenge[1], "branch7", "r-pw")).trunk == "remote"
    # the carrier's credentials are only good from the carrier's network
    assert policy.check("198.51.100.4", "INVITE", URI, authorization(first.challenge[0], "carrier1", "c-pw")).decision == "forbid"


def test_without_a_credentials_only_trunk_strangers_are_refused() -> None:
    verdict = AccessPolicy(POLICY_TRUNKS[:2]).check("198.51.100.4", "INVITE", URI, None)
    assert (verdict.decision, verdict.why) == ("forbid", "source on no trunk")


def test_a_stale_nonce_is_challenged_again() -> None:
    policy = AccessPolicy(POLICY_TRUNKS)
    old = policy._auth["remote"].challenge(now=0)[0]
    verdict = policy.check("198.51.100.4", "INVITE", URI, authorization(old, "branch7", "r-pw"))
    assert verdict.decision == "challenge" and "stale=true" in verdict.challenge[0]


@pytest.mark.parametrize("source", ["not-an-ip", ""])
def test_odd_sources_are_refused(source: str) -> None:
    assert AccessPolicy(POLICY_TRUNKS).check(source, "INVITE", URI, None).decision == "forbid"


def test_a_trunk_must_say_something() -> None:
    with pytest.raises(ValueError):
        Trunk("empty")
