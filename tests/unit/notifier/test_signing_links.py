"""Signed feedback links: what verifies, what is refused and why."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlparse

import pytest

from dqad.signing import LinkError, feedback_link, make_claim, parse_secret, sign_claim, verify

KEYS = parse_secret("k" * 32)
NOW = 1_800_000_000.0


def params(label: str = "normal", ttl: float = 3600, keys=KEYS, series: str = "sales.orders/row_count") -> dict:
    claim = make_claim("shop_dq", series, "2026-11-02T02:16:07", label, "run-a", ttl, now=NOW)
    return sign_claim(keys, claim)


def test_round_trip() -> None:
    claim = verify(params(), KEYS, now=NOW + 10)
    assert (claim.dataset, claim.series, claim.timestamp, claim.label, claim.run_id) == (
        "shop_dq",
        "sales.orders/row_count",
        "2026-11-02T02:16:07",
        "normal",
        "run-a",
    )


def test_link_is_a_url_on_the_base_with_the_signed_fields() -> None:
    claim = make_claim("shop_dq", "a/b & c=d", "2026-11-02T02:16:07", "anomaly", "run-a", 60, now=NOW)
    url = feedback_link("https://x.lambda-url.eu-west-1.on.aws/", KEYS, claim)
    assert url.startswith("https://x.lambda-url.eu-west-1.on.aws/?")
    q = dict(parse_qsl(urlparse(url).query))
    assert q["s"] == "a/b & c=d"  # awkward characters survive the round trip
    assert verify(q, KEYS, now=NOW).series == "a/b & c=d"


@pytest.mark.parametrize("field", ["d", "s", "t", "l", "r", "e"])
def test_any_altered_field_breaks_the_signature(field: str) -> None:
    p = params()
    p[field] = {"l": "anomaly", "e": str(int(p["e"]) + 1)}.get(field, p[field] + "x")
    with pytest.raises(LinkError, match="altered or not issued by dqad"):
        verify(p, KEYS, now=NOW)


def test_forged_signature_and_wrong_key_are_refused() -> None:
    with pytest.raises(LinkError, match="altered"):
        verify(params() | {"sig": "x" * 43}, KEYS, now=NOW)
    with pytest.raises(LinkError, match="altered"):
        verify(params(keys=parse_secret("z" * 32)), KEYS, now=NOW)


def test_missing_fields_are_refused() -> None:
    p = params()
    del p["sig"]
    with pytest.raises(LinkError, match="incomplete"):
        verify(p, KEYS, now=NOW)


def test_expired_link_is_refused_after_the_signature_check() -> None:
    p = params(ttl=60)
    with pytest.raises(LinkError, match="expired on 2027-01-15 08:01 UTC"):
        verify(p, KEYS, now=NOW + 61)
    # a forged link never learns whether it would have been expired
    with pytest.raises(LinkError, match="altered"):
        verify(p | {"sig": "y" * 43}, KEYS, now=NOW + 61)


def test_key_rotation_accepts_previous_key() -> None:
    old = parse_secret("o" * 32)
    rotated = parse_secret(json.dumps({"current": "n" * 32, "previous": "o" * 32}))
    assert verify(params(keys=old), rotated, now=NOW).label == "normal"
    assert sign_claim(rotated, make_claim("d", "s", "t", "normal", "r", 1, now=NOW))["sig"] != params(keys=old)["sig"]


def test_weak_or_malformed_secrets_are_rejected() -> None:
    with pytest.raises(ValueError, match="too short"):
        parse_secret("short")
    with pytest.raises(ValueError, match="current"):
        parse_secret(json.dumps({"previous": "p" * 32}))
    with pytest.raises(ValueError, match="label"):
        sign_claim(KEYS, make_claim("d", "s", "t", "maybe", "r", 1))


def test_links_are_issued_for_at_most_the_cap() -> None:
    from dqad.signing import MAX_LINK_TTL_S

    assert verify(params(ttl=MAX_LINK_TTL_S), KEYS, now=NOW).expires == int(NOW + MAX_LINK_TTL_S)
    with pytest.raises(ValueError, match="at most 30 days"):
        make_claim("d", "s", "t", "normal", "r", MAX_LINK_TTL_S + 1, now=NOW)


def test_a_signed_link_claiming_more_than_the_cap_is_refused() -> None:
    """An authentic signature does not make a year-long credential acceptable (an old issuer)."""
    from dqad.signing import MAX_LINK_TTL_S, FeedbackClaim, _sign

    claim = FeedbackClaim("shop_dq", "s", "2026-11-02T02:16:07", "normal", "run-a", int(NOW + 365 * 86400))
    query = {"d": claim.dataset, "s": claim.series, "t": claim.timestamp, "l": claim.label, "r": claim.run_id,
             "e": str(claim.expires), "v": "1", "sig": _sign(KEYS[0], claim)}  # fmt: skip
    with pytest.raises(LinkError, match="beyond the 30 days"):
        verify(query, KEYS, now=NOW)
    assert MAX_LINK_TTL_S == 30 * 86400


def test_the_catalog_refuses_a_link_lifetime_beyond_the_cap() -> None:
    from dqad.datasets import DatasetConfigError, parse_catalog

    base = (
        '[datasets.dq]\nkeys = ["k"]\ntimestamp = "t"\nvalue = "v"\n[datasets.dq.trigger]\ntable_names = ["dq.t"]\n'
        '[datasets.dq.source]\nkind = "file"\npath = "x.parquet"\n[datasets.dq.notifier]\n'
    )
    assert (
        parse_catalog(base + "feedback_link_expiry_hours = 720\n").get("dq").notifier.feedback_link_expiry_hours == 720
    )
    with pytest.raises(DatasetConfigError, match="feedback_link_expiry_hours"):
        parse_catalog(base + "feedback_link_expiry_hours = 721\n")
