"""POST a JSON payload to a webhook with bounded retries (urllib only: nothing to add to the artifact).

Retried: network errors, timeouts, 429 and 5xx (the endpoint may recover within seconds). Not
retried: other 4xx (a revoked webhook or a payload the platform refuses will not get better). The
waits grow (``backoff``, ×2 each time, at most ``MAX_WAIT_S``) and the attempts are bounded, so a
dead endpoint costs the notifier seconds, not its timeout.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_WAIT_S = 8.0


class DeliveryError(Exception):
    """A channel could not be delivered after its attempts; the message says why in one line."""

    def __init__(self, message: str, attempts: int, status: int | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.status = status


@dataclass(frozen=True)
class Retry:
    attempts: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 5.0  # three channels that all time out still fit the notifier's 120 s


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    retry: Retry = Retry(),
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``body`` (JSON) to ``url``; the HTTP status of the accepted attempt, or :class:`DeliveryError`."""
    last = ""
    status: int | None = None
    for attempt in range(1, retry.attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
        )
        try:
            with urllib.request.urlopen(request, timeout=retry.timeout_s) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            status, last = exc.code, f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                raise DeliveryError(
                    f"{last} (not retried: the endpoint refused the message)", attempt, status
                ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            status, last = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retry.attempts:
            sleep(min(retry.backoff_s * 2 ** (attempt - 1), MAX_WAIT_S))
    raise DeliveryError(f"{last} after {retry.attempts} attempts", retry.attempts, status)
