"""Slack incoming webhook: a Block Kit message (header, one section per incident, buttons, detail).

Limits Slack documents and this module keeps (a message over them is refused whole): at most 50
blocks, header text 150 characters, section text 3000, button text 75, button URL 3000, at most 25
elements in an actions block and 10 in a context block. Incidents come first, each with its
feedback buttons; the metric detail follows in one section; the report is a button.
"""

from __future__ import annotations

from typing import Any

from dqad_notifier.channels.message import SEVERITY_MARK, Message, anomaly_line, incident_evidence

MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_MAX = 3000


def esc(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) as its entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _button(text: str, url: str, action_id: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": _cut(text, 75)},
        "url": url,
        "action_id": action_id,
    }
    if style:
        button["style"] = style
    return button


def render(msg: Message) -> dict[str, Any]:
    """The webhook body: ``text`` (notification fallback) and ``blocks``."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(msg.title, HEADER_MAX)}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": esc(f"run {msg.run_id} · dataset {msg.dataset}")}],
        },
    ]
    shown = list(msg.incidents)[: msg.max_incidents]
    for n, incident in enumerate(shown):
        mark = SEVERITY_MARK.get(incident.severity, "⚪")
        lines = [f"{mark} *{esc(incident.kind.words)}* · {esc(incident.summary)}"]
        lines += [f"• {esc(d)}" for d in incident.details[:10]]
        lines += [f"  _{esc(e)}_" for e in incident_evidence(incident)]
        lines.append(
            f"load of {incident.timestamp:%Y-%m-%d %H:%M} UTC" + (f" · job {esc(incident.job)}" if incident.job else "")
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), SECTION_MAX)}})
        lead = msg.lead_point(incident)
        links = msg.feedback_links(*lead) if lead else {}
        if links:
            blocks.append(
                {
                    "type": "actions",
                    "elements": [
                        _button("Expected - not an anomaly", links["normal"], f"normal-{n}"),
                        _button("Confirmed incident", links["anomaly"], f"anomaly-{n}", "danger"),
                    ],
                }
            )
        elif lead:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": esc(msg.feedback_command(*lead))}]}
            )
    if len(msg.incidents) > len(shown):
        more = len(msg.incidents) - len(shown)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"and {more} more in the report"}]})
    ranked = msg.ranked_anomalies()
    if ranked:
        lines = ["*Metric detail*"] + [esc(anomaly_line(p)) for p in ranked[: msg.max_anomalies]]
        if len(ranked) > msg.max_anomalies:
            lines.append(f"_and {len(ranked) - msg.max_anomalies} more in the report_")
        blocks += [
            {"type": "divider"},
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), SECTION_MAX)}},
        ]
    if msg.report_link:
        blocks.append(
            {"type": "actions", "elements": [_button("Open the report", msg.report_link, "report", "primary")]}
        )
    blocks = blocks[: MAX_BLOCKS - 1] + blocks[MAX_BLOCKS - 1 :][-1:]  # the report button survives a cut
    fallback = "; ".join(i.summary for i in shown) or msg.title
    return {"text": _cut(f"{msg.title}: {fallback}", 3000), "blocks": blocks}
