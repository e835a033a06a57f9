"""Channel payloads against the platforms' documented schemas (a JSON-schema subset of each), the
signed webhook's signature, and the bounded retries of the HTTP delivery. No network."""

from __future__ import annotations

import json
import urllib.error
from datetime import datetime

import jsonschema
import pytest

from dqad.incidents import Evidence, Incident, Kind
from dqad_notifier.channels import http, slack, teams, webhook
from dqad_notifier.channels.http import DeliveryError, Retry, post_json
from dqad_notifier.channels.message import Message

T = datetime(2026, 11, 2, 2, 16, 7)

# Block Kit (api.slack.com/reference/block-kit/blocks): the block types dqad sends and their limits.
_TEXT = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {"type": {"enum": ["plain_text", "mrkdwn"]}, "text": {"type": "string", "minLength": 1}},
}
_PLAIN = {**_TEXT, "properties": {**_TEXT["properties"], "type": {"const": "plain_text"}}}
_BUTTON = {
    "type": "object",
    "required": ["type", "text", "action_id"],
    "additionalProperties": False,
    "properties": {
        "type": {"const": "button"},
        "text": {**_PLAIN, "properties": {**_PLAIN["properties"], "text": {"type": "string", "maxLength": 75}}},
        "url": {"type": "string", "maxLength": 3000, "pattern": "^https?://"},
        "action_id": {"type": "string", "maxLength": 255},
        "style": {"enum": ["primary", "danger"]},
    },
}
BLOCK_KIT = {
    "type": "object",
    "required": ["blocks"],
    "properties": {
        "text": {"type": "string"},
        "blocks": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "header"},
                            "text": {
                                **_PLAIN,
                                "properties": {"type": {"const": "plain_text"}, "text": {"maxLength": 150}},
                            },
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "section"},
                            "text": {**_TEXT, "properties": {**_TEXT["properties"], "text": {"maxLength": 3000}}},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "context"},
                            "elements": {"type": "array", "minItems": 1, "maxItems": 10, "items": _TEXT},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "elements"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"const": "actions"},
                            "elements": {"type": "array", "minItems": 1, "maxItems": 25, "items": _BUTTON},
                        },
                    },
                    {"type": "object", "required": ["type"], "properties": {"type": {"const": "divider"}}},
                ]
            },
        },
    },
}

# Adaptive Card 1.4 (adaptivecards.io/explorer) in the Teams workflow's message envelope.
_ELEMENT: dict = {
    "type": "object",
    "required": ["type"],
    "oneOf": [
        {
            "properties": {
                "type": {"const": "TextBlock"},
                "text": {"type": "string", "minLength": 1},
                "wrap": {"type": "boolean"},
                "size": {"enum": ["Small", "Default", "Medium", "Large", "ExtraLarge"]},
                "weight": {"enum": ["Lighter", "Default", "Bolder"]},
                "isSubtle": {"type": "boolean"},
                "spacing": {"enum": ["None", "Small", "Default", "Medium", "Large", "ExtraLarge", "Padding"]},
                "separator": {"type": "boolean"},
                "fontType": {"enum": ["Default", "Monospace"]},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        {
            "properties": {
                "type": {"const": "Container"},
                "style": {"enum": ["default", "emphasis", "good", "attention", "warning", "accent"]},
                "items": {"type": "array", "items": {"$ref": "#/$defs/element"}},
            },
            "required": ["items"],
            "additionalProperties": False,
        },
        {
            "properties": {
                "type": {"const": "FactSet"},
                "facts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["title", "value"],
                        "properties": {"title": {"type": "string"}, "value": {"type": "string"}},
                    },
                },
            },
            "required": ["facts"],
            "additionalProperties": False,
        },
        {
            "properties": {"type": {"const": "ActionSet"}, "actions": {"$ref": "#/$defs/actions"}},
            "required": ["actions"],
            "additionalProperties": False,
        },
    ],
}
ADAPTIVE_CARD_MESSAGE = {
    "$defs": {
        "element": _ELEMENT,
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "title", "url"],
                "additionalProperties": False,
                "properties": {
                    "type": {"const": "Action.OpenUrl"},
                    "title": {"type": "string"},
                    "url": {"type": "string", "pattern": "^https?://"},
                },
            },
        },
    },
    "type": "object",
    "required": ["type", "attachments"],
    "properties": {
        "type": {"const": "message"},
        "attachments": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["contentType", "content"],
                "properties": {
                    "contentType": {"const": "application/vnd.microsoft.card.adaptive"},
                    "contentUrl": {"type": "null"},
                    "content": {
                        "type": "object",
                        "required": ["type", "version", "body"],
                        "properties": {
                            "$schema": {"const": "http://adaptivecards.io/schemas/adaptive-card.json"},
                            "type": {"const": "AdaptiveCard"},
                            "version": {"enum": ["1.4", "1.5"]},
                            "body": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/element"}},
                            "actions": {"$ref": "#/$defs/actions"},
                            "msteams": {"type": "object"},
                        },
                        "additionalProperties": False,
                    },
                },
            },
        },
    },
}


def incident(table: str = "sales.order_lines", summary: str = "", kind: Kind = Kind.EMPTY) -> Incident:
    return Incident(
        kind,
        (table,),
        T,
        "high",
        summary or f"{table} loaded empty: 0 rows instead of about 3.1 million",
        (Evidence(f"{table}/row_count", "row_count", "row_count", 0.0, 2.9e6, 3.3e6, True, "high", 0.92),),
        job="dq_sales",
    )


def linker(series: str, ts: str, label: str) -> str:
    return f"https://feedback.example/?s={series}&t={ts}&l={label}"


def message(incidents: list[Incident], **kw) -> Message:
    return Message("demo_dq", "run-a", incidents, report_link="https://bucket.example/report.html", **kw)


@pytest.mark.parametrize("feedback", [linker, None])
def test_slack_and_teams_payloads_match_the_documented_schemas(feedback) -> None:
    msg = message([incident(), incident("crm.contacts", kind=Kind.NULL_SPIKE)], feedback=feedback)
    jsonschema.validate(slack.render(msg), BLOCK_KIT)
    jsonschema.validate(teams.render(msg), ADAPTIVE_CARD_MESSAGE)


def test_slack_leads_with_incidents_and_carries_the_feedback_and_report_buttons() -> None:
    payload = slack.render(message([incident()], feedback=linker))
    blocks = payload["blocks"]
    assert blocks[0]["text"]["text"] == "dqad · demo_dq: 1 incident (empty load)"
    assert (
        "*empty load* · sales.order_lines loaded empty: 0 rows instead of about 3.1 million"
        in blocks[2]["text"]["text"]
    )
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == [
        "Expected - not an anomaly",
        "Confirmed incident",
        "Open the report",
    ]
    assert buttons[0]["url"] == linker("sales.order_lines/row_count", "2026-11-02T02:16:07", "normal")


def test_slack_and_teams_stay_within_limits_with_many_long_incidents() -> None:
    many = [incident(f"t.table_{i}", summary="x" * 5000) for i in range(80)]
    for msg in (message(many, feedback=linker, max_incidents=80), message(many, feedback=linker)):
        payload = slack.render(msg)
        jsonschema.validate(payload, BLOCK_KIT)
        assert payload["blocks"][-1]["elements"][0]["action_id"] == "report"  # kept when the list is cut
        assert len(json.dumps(teams.render(msg), ensure_ascii=False).encode()) < 28_000
        jsonschema.validate(teams.render(msg), ADAPTIVE_CARD_MESSAGE)


def test_slack_escapes_its_control_characters() -> None:
    text = slack.render(message([incident(summary="a <b> & c")]))["blocks"][2]["text"]["text"]
    assert "a &lt;b&gt; &amp; c" in text


def test_webhook_signature_verifies_and_breaks_on_any_change() -> None:
    key = b"k" * 32
    body = webhook.encode(webhook.render(message([incident()]), "run-a/hook"))
    h = webhook.headers(key, body, "run-a/hook", now=1_800_000_000)
    ts, sig = h["X-Dqad-Timestamp"], h["X-Dqad-Signature"]
    assert sig.startswith("v1=") and h["X-Dqad-Delivery"] == "run-a/hook"
    assert webhook.verify(key, body, ts, sig, now=1_800_000_100)
    assert not webhook.verify(key, body + b" ", ts, sig, now=1_800_000_100)  # body changed
    assert not webhook.verify(b"x" * 32, body, ts, sig, now=1_800_000_100)  # other key
    assert not webhook.verify(key, body, ts, sig, now=1_800_000_000 + 301)  # stale: a replay
    doc = json.loads(body)
    assert doc["incidents"][0]["kind"] == "empty_load" and doc["incidents"][0]["feedback"]["command"].startswith(
        "dqad feedback --dataset demo_dq --series sales.order_lines/row_count"
    )


def test_post_retries_server_errors_with_growing_waits_then_gives_up(monkeypatch) -> None:
    calls, waits = [], []

    def refuse(request, timeout):
        calls.append(request.full_url)
        raise urllib.error.HTTPError(request.full_url, 503, "Service Unavailable", {}, None)

    monkeypatch.setattr(http.urllib.request, "urlopen", refuse)
    with pytest.raises(DeliveryError, match="HTTP 503 Service Unavailable after 4 attempts") as info:
        post_json("https://hooks.example/x", b"{}", retry=Retry(attempts=4, backoff_s=0.5), sleep=waits.append)
    assert len(calls) == 4 and waits == [0.5, 1.0, 2.0] and info.value.status == 503


def test_post_does_not_retry_a_refusal(monkeypatch) -> None:
    calls = []

    def gone(request, timeout):
        calls.append(1)
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    monkeypatch.setattr(http.urllib.request, "urlopen", gone)
    with pytest.raises(DeliveryError, match="HTTP 404 Not Found"):
        post_json("https://hooks.example/x", b"{}", retry=Retry(attempts=4), sleep=lambda s: None)
    assert calls == [1]
