"""Channels besides the email: Slack, Microsoft Teams and a signed JSON webhook (docs/alerts.md, "Channels").

Configured per dataset (``channels = [{ kind = "slack", secret = "<secret name>" }, ...]``); the
webhook URL (and a webhook's signing key) is read from Secrets Manager when the message is sent,
never from the configuration, because a webhook URL is a credential.

Delivery rules:

* one channel failing never stops the others or the email: each is tried on its own, retried
  (bounded, with backoff, :mod:`dqad_notifier.channels.http`) and then reported on the operator
  topic, naming the channel, the run and the error;
* at most once per run and channel: a delivered channel is recorded in
  ``alerts/<dataset>/deliveries/<run_id>/<channel>.json`` (written only if absent), and a record
  that is there is not sent again when the run's event is redelivered or retried after another
  part of the notification failed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from aws_lambda_powertools import Logger

from dqad.datasets import Channel, Dataset
from dqad.stage import StageRuntime
from dqad_notifier.channels import slack, teams, webhook
from dqad_notifier.channels.http import DeliveryError, Retry, post_json
from dqad_notifier.channels.message import Message

logger = Logger(service="dqad-notifier")

RETRY = Retry()
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


class ChannelConfigError(Exception):
    """The channel's secret does not hold what the channel needs; one line that says what."""


@dataclass(frozen=True)
class Target:
    url: str
    signing_key: bytes = b""


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    kind: str
    status: str  # "sent", "already sent", "failed"
    error: str = ""
    attempts: int = 0


def payload(channel: Channel, msg: Message, target: Target) -> tuple[bytes, dict[str, str]]:
    """The bytes and headers one channel sends for ``msg``."""
    if channel.kind == "slack":
        return webhook.encode(slack.render(msg)), {}
    if channel.kind == "teams":
        return webhook.encode(teams.render(msg)), {}
    delivery = f"{msg.run_id}/{channel.label}"
    body = webhook.encode(webhook.render(msg, delivery))
    return body, webhook.headers(target.signing_key, body, delivery)


def read_target(rt: StageRuntime, channel: Channel) -> Target:
    """The webhook URL (and signing key) from the channel's secret: a URL, or ``{"url", "signing_key"}``."""
    raw = rt.clients("secretsmanager").get_secret_value(SecretId=channel.secret)["SecretString"].strip()
    doc: dict[str, Any] = {"url": raw}
    if raw.startswith("{"):
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            raise ChannelConfigError(f"secret {channel.secret} is not valid JSON") from None
    url = str(doc.get("url", ""))
    parsed = urlparse(url)
    local = parsed.scheme == "http" and parsed.hostname in LOCAL_HOSTS
    if not ((parsed.scheme == "https" and parsed.netloc) or local):
        raise ChannelConfigError(f"secret {channel.secret} must hold an https:// webhook URL")
    key = str(doc.get("signing_key", ""))
    if channel.kind == "webhook" and len(key) < 16:
        raise ChannelConfigError(
            f'secret {channel.secret} must be {{"url": ..., "signing_key": ...}} with a key of at least 16 characters'
        )
    return Target(url, key.encode())


class DeliveryLog:
    """``alerts/<dataset>/deliveries/<run_id>/<channel>.json``: which channels already have this run."""

    def __init__(self, s3: Any, bucket: str, dataset: str, run_id: str) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, f"alerts/{dataset}/deliveries/{run_id}/"

    def key(self, channel: Channel) -> str:
        return self.prefix + re.sub(r"[^A-Za-z0-9._-]", "_", channel.label) + ".json"

    def sent(self, channel: Channel) -> bool:
        try:
            self.s3.get_object(Bucket=self.bucket, Key=self.key(channel))
        except self.s3.exceptions.NoSuchKey:
            return False
        return True

    def record(self, channel: Channel, status: int) -> None:
        body = json.dumps({"channel": channel.label, "kind": channel.kind, "status": status, "at": time.time()})
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key(channel), Body=body.encode(), IfNoneMatch="*")
        except self.s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise


def deliver_all(
    rt: StageRuntime,
    ds: Dataset,
    msg: Message,
    report_failure: Callable[[Channel, str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> list[ChannelResult]:
    """Send ``msg`` to every channel of ``ds``; a failure is reported through ``report_failure``, never raised."""
    log = DeliveryLog(rt.clients("s3"), rt.settings.bucket, ds.name, msg.run_id)
    results = []
    for channel in ds.channels:
        try:
            if log.sent(channel):
                results.append(ChannelResult(channel.label, channel.kind, "already sent"))
                continue
            target = read_target(rt, channel)
            body, headers = payload(channel, msg, target)
            status = post_json(target.url, body, headers, RETRY, sleep)
            log.record(channel, status)
            results.append(ChannelResult(channel.label, channel.kind, "sent"))
        except DeliveryError as exc:
            results.append(ChannelResult(channel.label, channel.kind, "failed", str(exc), exc.attempts))
        except Exception as exc:  # a missing secret, a bad URL, S3 refusing the record: this channel only
            results.append(ChannelResult(channel.label, channel.kind, "failed", f"{type(exc).__name__}: {exc}"[:500]))
        if results[-1].status == "failed":
            logger.error("channel not delivered", extra={"channel": channel.label, "error": results[-1].error})
            report_failure(channel, results[-1].error)
    return results
