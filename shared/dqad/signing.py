"""Signed, expiring feedback links, and signed model references (docs/architecture.md §8, habit 11).

Model references: a ModelTrained event names a model by (dataset, uri, sha256, version). The sha256
alone proves nothing, because whoever writes the event chooses it; so the trainer signs the four
fields with an HMAC key only it and the scorer can read (a Secrets Manager secret), and the scorer
verifies the signature before it reads a single byte of the model (and the model file itself cannot
run code: dqad.detect.model_format). :func:`sign_model_ref` / :func:`verify_model_ref`.

Feedback links: "this point is expected" from the alert email, without a login.

An alert email carries, per anomaly, two links to the feedback entry point (a public Lambda
function URL). Whoever holds a link may record that one verdict on that one point until it
expires, and nothing else: the link's fields are covered by an HMAC-SHA256 under a secret only
dqad knows, so changing the series, the label, the dataset or the expiry breaks the signature.

* Canonical message: the fields as a JSON array (unambiguous whatever characters a series name
  holds), prefixed with a purpose string, so a signature made for something else never verifies.
* Comparison with :func:`hmac.compare_digest` (constant time).
* The signature is checked *before* the expiry: a forged link learns nothing, and "expired" is
  only ever said about a link dqad really issued.
* Key rotation: the secret may be ``{"current": "...", "previous": "..."}``; links are signed with
  ``current`` and accepted under either, so rotating the secret does not break mails in flight.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

PURPOSE = "dqad-feedback-link"
LINK_VERSION = "1"
LABELS = ("normal", "anomaly")
MIN_SECRET_BYTES = 16
# The longest a feedback link lives: a link is a credential in a mailbox, so it must end. Links are
# issued for at most this long, and a link claiming more is refused even when its signature holds
# (an old or misconfigured issuer).
MAX_LINK_TTL_S = 30 * 24 * 3600
_CLOCK_SKEW_S = 300
# query parameter -> FeedbackClaim field
_PARAMS = {"d": "dataset", "s": "series", "t": "timestamp", "l": "label", "r": "run_id", "e": "expires"}


class LinkError(ValueError):
    """A feedback link that must be refused; the message is safe to show to the person who clicked."""


@dataclass(frozen=True)
class FeedbackClaim:
    """What one signed link allows: record ``label`` for (dataset, series, timestamp) until ``expires``."""

    dataset: str
    series: str
    timestamp: str  # ISO 8601, exactly as the scores hold it (the label key depends on it)
    label: str
    run_id: str
    expires: int  # Unix seconds

    def message(self) -> bytes:
        fields = [PURPOSE, LINK_VERSION, self.dataset, self.series, self.timestamp, self.label, self.run_id]
        return json.dumps([*fields, int(self.expires)], separators=(",", ":"), ensure_ascii=False).encode()

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


def parse_secret(value: str | bytes) -> list[bytes]:
    """Signing keys from a secret's value: a plain string, or JSON with ``current`` (+ ``previous``)."""
    text = value.decode() if isinstance(value, bytes) else value
    keys: list[str]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        if not doc.get("current"):
            raise ValueError("feedback secret JSON must have a non-empty 'current' key")
        keys = [doc["current"], *([doc["previous"]] if doc.get("previous") else [])]
    else:
        keys = [text]
    out = [k.encode() for k in keys]
    if any(len(k) < MIN_SECRET_BYTES for k in out):
        raise ValueError(f"feedback secret too short: use at least {MIN_SECRET_BYTES} random bytes")
    return out


def _sign(key: bytes, claim: FeedbackClaim) -> str:
    digest = hmac.new(key, claim.message(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_claim(keys: Sequence[bytes], claim: FeedbackClaim) -> dict[str, str]:
    """Query parameters of a signed link (signed with the first, i.e. current, key)."""
    if claim.label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {claim.label!r}")
    params = {p: str(getattr(claim, f)) for p, f in _PARAMS.items()}
    params["v"] = LINK_VERSION
    params["sig"] = _sign(keys[0], claim)
    return params


def feedback_link(base_url: str, keys: Sequence[bytes], claim: FeedbackClaim) -> str:
    """The full URL for one verdict on one point."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}{urlencode(sign_claim(keys, claim))}"


def make_claim(
    dataset: str, series: str, timestamp: str, label: str, run_id: str, ttl_s: float, now: float | None = None
) -> FeedbackClaim:
    if not 0 < ttl_s <= MAX_LINK_TTL_S:
        raise ValueError(f"a feedback link lives more than 0 and at most {MAX_LINK_TTL_S // 86400} days, got {ttl_s} s")
    return FeedbackClaim(dataset, series, timestamp, label, run_id, int((now or time.time()) + ttl_s))


def verify(params: Mapping[str, str], keys: Sequence[bytes], now: float | None = None) -> FeedbackClaim:
    """The claim of a link, or :class:`LinkError` saying why it is refused."""
    missing = [p for p in (*_PARAMS, "v", "sig") if not params.get(p)]
    if missing:
        raise LinkError("This link is incomplete (was it cut when copied from the email?).")
    if params["v"] != LINK_VERSION:
        raise LinkError("This link was made by an unsupported version of dqad.")
    try:
        expires = int(params["e"])
    except ValueError:
        raise LinkError("This link is not valid: it was altered or not issued by dqad.") from None
    claim = FeedbackClaim(
        dataset=params["d"],
        series=params["s"],
        timestamp=params["t"],
        label=params["l"],
        run_id=params["r"],
        expires=expires,
    )
    given = params["sig"]
    if not any(hmac.compare_digest(_sign(k, claim), given) for k in keys):
        raise LinkError("This link is not valid: it was altered or not issued by dqad.")
    if claim.label not in LABELS:  # signed, so only an old or buggy issuer could get here
        raise LinkError("This link carries an unknown verdict.")
    current = now if now is not None else time.time()
    if claim.expires > current + MAX_LINK_TTL_S + _CLOCK_SKEW_S:
        raise LinkError(
            f"This link is not valid: it claims to last beyond the {MAX_LINK_TTL_S // 86400} days "
            "dqad issues links for."
        )
    if current > claim.expires:
        raise LinkError(
            f"This link expired on {claim.expires_at:%Y-%m-%d %H:%M} UTC. Use a link from a newer alert, "
            "or ask your data team to record it with `dqad feedback`."
        )
    return claim


# -- model references ----------------------------------------------------------------------------
MODEL_PURPOSE = "dqad-model-ref"


class SignatureError(ValueError):
    """A model reference whose signature does not verify: never load the bytes it points to."""


def _model_message(dataset: str, uri: str, sha256: str, version: str) -> bytes:
    fields = [MODEL_PURPOSE, LINK_VERSION, dataset, uri, sha256, version]
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def sign_model_ref(keys: Sequence[bytes], dataset: str, uri: str, sha256: str, version: str) -> str:
    """Signature of a model reference with the current key (URL-safe base64 of an HMAC-SHA256)."""
    digest = hmac.new(keys[0], _model_message(dataset, uri, sha256, version), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verify_model_ref(keys: Sequence[bytes], dataset: str, uri: str, sha256: str, version: str, signature: str) -> None:
    """Raise :class:`SignatureError` unless ``signature`` was made by a holder of one of ``keys``."""
    if not signature:
        raise SignatureError(f"model reference {uri} is not signed; only the trainer's signed references load")
    message = _model_message(dataset, uri, sha256, version)
    for key in keys:
        expected = base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()
        if hmac.compare_digest(expected, signature):
            return
    raise SignatureError(f"model reference {uri} has a signature the trainer did not make; refusing to load it")


_key_cache: dict[str, tuple[float, list[bytes]]] = {}
KEY_TTL_S = 300.0


def secret_keys(secretsmanager: Any, arn: str) -> list[bytes]:
    """Keys held in a Secrets Manager secret (see :func:`parse_secret`), cached a few minutes per ARN."""
    cached = _key_cache.get(arn)
    if cached and time.monotonic() - cached[0] < KEY_TTL_S:
        return cached[1]
    keys = parse_secret(secretsmanager.get_secret_value(SecretId=arn)["SecretString"])
    _key_cache[arn] = (time.monotonic(), keys)
    return keys
