"""What every channel says about a run, before any channel shapes it: incidents first, then metrics.

:class:`Message` is built from incidents and (optionally) the anomalous points, so a producer that
has incidents without scores (the freshness check's late and missing loads) renders through the same
path: ``Message(dataset, run_id, incidents)``. Each channel module turns it into its platform's
payload with a pure ``render(message) -> dict``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from dqad.incidents import Incident, metric_label
from dqad.report import deviation, rank_order
from dqad.wording import fmt_value, plural
from dqad_notifier.scores import ScoredPoint

FeedbackLinker = Callable[[str, str, str], str]  # (series, timestamp ISO, label) -> URL
SEVERITY_MARK = {"high": "🔴", "medium": "🟠", "low": "🟡"}


def iso(ts: datetime) -> str:
    """The exact timestamp of a point, as the label key expects it (UTC, no offset)."""
    return (ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts).isoformat()


@dataclass(frozen=True)
class Message:
    """One run's alert, channel-neutral. ``anomalies`` are the points to detail below the incidents."""

    dataset: str
    run_id: str
    incidents: Sequence[Incident]
    anomalies: Sequence[ScoredPoint] = ()
    report_link: str | None = None
    feedback: FeedbackLinker | None = None  # signed links; None: the `dqad feedback` command instead
    max_incidents: int = 10
    max_anomalies: int = 10
    cli_flags: str = ""

    @property
    def title(self) -> str:
        if self.incidents:
            kinds = list(dict.fromkeys(i.kind.words for i in self.incidents))
            shown = ", ".join(kinds[:3]) + (f" +{len(kinds) - 3} more" if len(kinds) > 3 else "")
            return f"dqad · {self.dataset}: {plural(len(self.incidents), 'incident', 'incidents')} ({shown})"
        return f"dqad · {self.dataset}: {plural(len(self.anomalies), 'anomaly', 'anomalies')}"

    def ranked_anomalies(self) -> list[ScoredPoint]:
        a = list(self.anomalies)
        order = rank_order([p.severity for p in a], [p.score for p in a], [p.series for p in a], [p.group for p in a])
        return [a[i] for i, _ in order]

    def lead_point(self, incident: Incident) -> tuple[str, str] | None:
        """(series, timestamp) the incident's feedback buttons label: its most anomalous metric."""
        lead = next((m for m in incident.metrics if m.is_anomaly), None)
        return None if lead is None else (lead.series, iso(lead.timestamp or incident.timestamp))

    def feedback_links(self, series: str, timestamp: str) -> dict[str, str]:
        if self.feedback is None:
            return {}
        return {
            "normal": self.feedback(series, timestamp, "normal"),
            "anomaly": self.feedback(series, timestamp, "anomaly"),
        }

    def feedback_command(self, series: str, timestamp: str) -> str:
        return (
            f"dqad feedback --dataset {self.dataset} --series {shlex.quote(series)} --timestamp {timestamp} "
            f"--label normal{self.cli_flags}"
        )


def anomaly_line(p: ScoredPoint) -> str:
    """One metric of the detail, in words: "sales.orders · rows loaded (row_count): 0, expected 2.9M to ..."."""
    dev = deviation(p.value, p.expected_low, p.expected_high)
    return (
        f"{p.group} · {metric_label(p.series, p.group)}: {fmt_value(p.value)}, expected "
        f"{fmt_value(p.expected_low)} to {fmt_value(p.expected_high)}" + (f" ({dev})" if dev else "")
    )


def incident_evidence(incident: Incident, limit: int = 4) -> list[str]:
    """The anomalous metrics of an incident, one short line each."""
    cited = [m for m in incident.metrics if m.is_anomaly]
    lines = [
        f"{m.words}: {fmt_value(m.value)} (expected {fmt_value(m.expected_low)} to {fmt_value(m.expected_high)})"
        for m in cited[:limit]
    ]
    if len(cited) > limit:
        lines.append(f"and {plural(len(cited) - limit, 'more metric', 'more metrics')}")
    return lines
