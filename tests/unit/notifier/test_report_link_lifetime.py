"""The email states the report link's real lifetime: a URL presigned with temporary credentials
dies with them, whatever its ExpiresIn says."""

from __future__ import annotations

from datetime import UTC, datetime

from botocore.credentials import Credentials, RefreshableCredentials

from dqad_notifier.domain import report_link_lifetime

WEEK = 7 * 24 * 3600
NOW = 1_800_000_000.0


def test_long_term_keys_live_as_long_as_asked() -> None:
    assert report_link_lifetime(Credentials("AKIA", "secret"), WEEK) == (WEEK, False)


def test_lambda_role_credentials_have_no_readable_expiry_so_the_lifetime_is_an_upper_bound() -> None:
    # Lambda hands its role's session to the function as environment variables, expiry not included
    env = Credentials("ASIA", "secret", "session-token", method="env")
    assert report_link_lifetime(env, WEEK) == (WEEK, True)


def test_credentials_with_an_expiry_shorten_the_link_to_it() -> None:
    def refreshable(expiry_s: float) -> RefreshableCredentials:
        expiry = datetime.fromtimestamp(NOW + expiry_s, UTC)
        return RefreshableCredentials("ASIA", "secret", "token", expiry, lambda: {}, "assume-role")

    assert report_link_lifetime(refreshable(3600), WEEK, now=NOW) == (3600, False)
    assert report_link_lifetime(refreshable(2 * WEEK), WEEK, now=NOW) == (WEEK, False)
    assert report_link_lifetime(None, WEEK) == (WEEK, False)
