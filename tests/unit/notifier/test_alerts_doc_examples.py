"""docs/alerts.md shows each channel's message as the code renders it, byte for byte.

The examples are the demo's empty load, rendered by the real Slack / Teams / webhook renderers with
real signed feedback links (a fixed key and clock). When a renderer changes, regenerate the doc's
blocks with ``python -m tests.unit.notifier.test_alerts_doc_examples`` and review the diff.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from dqad.incidents import Evidence, Incident, Kind
from dqad.signing import feedback_link, make_claim
from dqad_notifier.channels import slack, teams, webhook
from dqad_notifier.channels.message import Message
from dqad_notifier.scores import ScoredPoint

DOC = Path(__file__).resolve().parents[3] / "docs" / "alerts.md"
NOW = 1_793_587_000  # 2026-11-02 06:36 UTC
RUN = "20261102T0901-c09a3d4567be"
T = datetime(2026, 11, 2, 2, 16, 14)
BASE = "https://abc123example.lambda-url.eu-west-1.on.aws/"
REPORT = "https://dqad-prod-bucket.s3.amazonaws.com/runs/demo_dq/20261102T0901-c09a3d4567be/report.html?X-Amz-..."


def example() -> Message:
    rows = ScoredPoint(
        "sales.order_lines/row_count", "sales.order_lines", T, 0.0, 0.92, True, "high", 2_888_866.0, 3_395_711.0,
        "value 0 is 100% below the usual 3,142,288 for Mondays",
    )  # fmt: skip
    total = ScoredPoint(
        "sales.order_lines/sum_amount", "sales.order_lines", T, 0.0, 0.90, True, "high", 43_378_582.0, 52_776_571.0,
        "value 0 is 100% below the usual 48,077,577 for Mondays",
    )  # fmt: skip
    evidence = tuple(
        Evidence(
            p.series, p.series.split("/")[1], role, p.value, p.expected_low, p.expected_high, True, "high", p.score
        )
        for p, role in ((rows, "row_count"), (total, "sum"))
    )
    incident = Incident(
        Kind.EMPTY,
        ("sales.order_lines",),
        T,
        "high",
        "sales.order_lines loaded empty: 0 rows instead of about 3.1 million",
        evidence,
        job="tln_load_sales_order_lines",
        dataset="demo_dq",
    )
    keys = [b"example-key-not-a-secret-0123456789"]

    def link(series: str, ts: str, label: str) -> str:
        return feedback_link(BASE, keys, make_claim("demo_dq", series, ts, label, RUN, 14 * 24 * 3600, now=NOW))

    return Message("demo_dq", RUN, [incident], [rows, total], report_link=REPORT, feedback=link)


def rendered() -> dict[str, str]:
    msg = example()
    body = webhook.encode(webhook.render(msg, f"{RUN}/pager"))
    headers = webhook.headers(b"example-signing-key-0123456789", body, f"{RUN}/pager", now=NOW)
    return {
        "slack": json.dumps(slack.render(msg), indent=2, ensure_ascii=False),
        "teams": json.dumps(teams.render(msg), indent=2, ensure_ascii=False),
        "webhook-headers": "\n".join(f"{k}: {v}" for k, v in headers.items()),
        "webhook": json.dumps(json.loads(body), indent=2, ensure_ascii=False),
    }


BLOCK = re.compile(r"(<!-- example: (?P<name>[\w-]+) -->\n```\w*\n)(?P<body>.*?)(\n```)", re.S)


def doc_examples(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def test_the_docs_examples_are_what_the_code_renders() -> None:
    assert doc_examples(DOC.read_text()) == rendered(), (
        "docs/alerts.md is out of date: python -m tests.unit.notifier.test_alerts_doc_examples"
    )


if __name__ == "__main__":
    fresh = rendered()
    DOC.write_text(BLOCK.sub(lambda m: m[1] + fresh[m["name"]] + m[4], DOC.read_text()))
    print(f"updated {', '.join(fresh)} in {DOC}")
