"""Microsoft Teams workflow webhook ("Post to a channel when a webhook request is received"): an
Adaptive Card 1.4 in the ``attachments`` envelope the workflow expects.

Teams renders Adaptive Cards up to version 1.5 in channels; 1.4 is used for the widest support
(mobile, older clients). Incidents come first, each with its feedback actions; the metric detail is
a FactSet; the report is the card's action. Teams refuses a message over about 28 KB, so the lists
are capped like the Slack message.
"""

from __future__ import annotations

import json
from typing import Any

from dqad_notifier.channels.message import SEVERITY_MARK, Message, anomaly_line, incident_evidence

CARD_VERSION = "1.4"
STYLE = {"high": "attention", "medium": "warning", "low": "default"}


MAX_BYTES = 27_000  # Teams refuses messages over about 28 KB
TEXT_MAX = 1000


def _text(text: str, **extra: Any) -> dict[str, Any]:
    cut = text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"
    return {"type": "TextBlock", "text": cut, "wrap": True, **extra}


def render(msg: Message) -> dict[str, Any]:
    """The workflow's message; incidents dropped from the end (the report has them) until it fits."""
    shown = min(len(msg.incidents), msg.max_incidents)
    while True:
        payload = _render(msg, shown)
        if shown <= 1 or len(json.dumps(payload, ensure_ascii=False).encode()) <= MAX_BYTES:
            return payload
        shown -= 1


def _render(msg: Message, limit: int) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        _text(msg.title, size="Large", weight="Bolder"),
        _text(f"run {msg.run_id} · dataset {msg.dataset}", isSubtle=True, spacing="None"),
    ]
    shown = list(msg.incidents)[:limit]
    for incident in shown:
        items: list[dict[str, Any]] = [
            _text(f"{SEVERITY_MARK.get(incident.severity, '⚪')} **{incident.kind.words}** · {incident.summary}"),
        ]
        items += [_text(f"- {d}", spacing="None") for d in incident.details[:10]]
        items += [_text(e, isSubtle=True, spacing="None", size="Small") for e in incident_evidence(incident)]
        when = f"load of {incident.timestamp:%Y-%m-%d %H:%M} UTC" + (f" · job {incident.job}" if incident.job else "")
        items.append(_text(when, isSubtle=True, spacing="None", size="Small"))
        lead = msg.lead_point(incident)
        links = msg.feedback_links(*lead) if lead else {}
        if links:
            items.append(
                {
                    "type": "ActionSet",
                    "actions": [
                        {"type": "Action.OpenUrl", "title": "Expected - not an anomaly", "url": links["normal"]},
                        {"type": "Action.OpenUrl", "title": "Confirmed incident", "url": links["anomaly"]},
                    ],
                }
            )
        elif lead:
            items.append(_text(msg.feedback_command(*lead), fontType="Monospace", size="Small", isSubtle=True))
        body.append({"type": "Container", "style": STYLE.get(incident.severity, "default"), "items": items})
    if len(msg.incidents) > len(shown):
        body.append(_text(f"and {len(msg.incidents) - len(shown)} more in the report", isSubtle=True))
    ranked = msg.ranked_anomalies()
    if ranked:
        body.append(_text("Metric detail", weight="Bolder", separator=True))
        body.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": f"[{p.severity.upper()}]", "value": anomaly_line(p)} for p in ranked[: msg.max_anomalies]
                ],
            }
        )
        if len(ranked) > msg.max_anomalies:
            body.append(_text(f"and {len(ranked) - msg.max_anomalies} more in the report", isSubtle=True))
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if msg.report_link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the report", "url": msg.report_link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
