"""Late, missing, arrived and empty loads (a ``LoadLogChecked`` event) as one plain-words email.

One line per table, in the words a data owner uses ("sales.orders: the load due 02:15 arrived at
04:40, 2 h 25 min late"); tables of one ETL job that share the news are grouped under the job, since
one stuck job is one thing to fix. Sent on the alerts topic through the same SNS path and the same
once-per-event idempotency as the anomaly digest (:func:`dqad_notifier.domain.notify`).

Pure rendering (:func:`message`) apart from :func:`send`; no pandas, no pyarrow.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from dqad.contract import LoadLogChecked
from dqad.freshness import LoadIncident
from dqad.stage import StageRuntime
from dqad.wording import plural

_ORDER = {"missing_load": 0, "late_load": 1, "empty_load": 2, "slow_load": 3, "load_arrived": 4}
_HEADINGS = {
    "missing_load": "Missing loads (the next one is due too)",
    "late_load": "Late loads",
    "empty_load": "Empty loads (the ETL log says 0 rows)",
    "slow_load": "Slow loads (by the ETL log's own duration)",
    "load_arrived": "Arrived (closes what was reported)",
}
_NOUNS = {
    "missing_load": ("missing load", "missing loads"),
    "late_load": ("late load", "late loads"),
    "empty_load": ("empty load", "empty loads"),
    "slow_load": ("slow load", "slow loads"),
    "load_arrived": ("late load arrived", "late loads arrived"),
}


def duration_words(seconds: float) -> str:
    """``2 h 25 min``, ``40 min``, ``3 d 4 h``: rounded to the minute, largest two units."""
    minutes = round(seconds / 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {mins} min" if mins else f"{hours} h"
    return f"{mins} min"


def _clock(at: datetime | None, ref: datetime | None = None) -> str:
    """``02:15`` when on the reference's UTC day, else ``Sun 1 Nov 02:15``."""
    if at is None:
        return "?"
    at = at.astimezone(UTC)
    if ref is not None and ref.astimezone(UTC).date() == at.date():
        return f"{at:%H:%M}"
    return f"{at:%a} {at.day} {at:%b %H:%M}"


def line(i: LoadIncident, checked_at: datetime) -> str:
    """One table's news in one line."""
    cadence = f" ({i.cadence})" if i.cadence else ""
    if i.kind == "late_load":
        late = f", {duration_words(i.lateness_s)} late so far" if i.lateness_s is not None else ""
        return f"{i.table}: the load due {_clock(i.due_at, checked_at)} UTC has not arrived{late}{cadence}"
    if i.kind == "missing_load":
        since = f"; the last one came {_clock(i.last_arrival, checked_at)} UTC" if i.last_arrival else ""
        return f"{i.table}: {i.missed} loads missing, the first due {_clock(i.due_at, checked_at)} UTC{since}{cadence}"
    if i.kind == "load_arrived":
        late = f", {duration_words(i.lateness_s)} late" if i.lateness_s else ""
        due, came = _clock(i.due_at, i.arrived_at), _clock(i.arrived_at, i.due_at)
        return f"{i.table}: the load due {due} arrived at {came}{late}"
    if i.kind == "slow_load":
        took = duration_words(i.duration_s or 0)
        usual = f" instead of about {duration_words(i.usual_duration_s)}" if i.usual_duration_s is not None else ""
        return f"{i.table}: the load that ended {_clock(i.arrived_at, checked_at)} UTC took {took}{usual}"
    return f"{i.table}: loaded empty at {_clock(i.arrived_at)} UTC: the ETL log says 0 rows (log id {i.log_id or '?'})"


def message(detail: LoadLogChecked) -> tuple[str, str]:
    """Subject and plain-text body of the email for one ``LoadLogChecked``."""
    incidents = [LoadIncident.from_json(d.model_dump(mode="json")) for d in detail.incidents]
    counts: dict[str, int] = defaultdict(int)
    for i in incidents:
        counts[i.kind] += 1
    kinds = sorted(counts, key=_ORDER.__getitem__)
    summary = ", ".join(plural(counts[k], *_NOUNS[k]) for k in kinds)
    subject = f"dqad {detail.dataset}: {summary}"
    lines = [
        f"{detail.dataset}: what the ETL log says at {detail.checked_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    for kind in kinds:
        lines.append(_HEADINGS[kind])
        of_kind = [i for i in incidents if i.kind == kind]
        by_job: dict[str, list[LoadIncident]] = defaultdict(list)
        for i in of_kind:
            by_job[i.job].append(i)
        for job in sorted(by_job):
            group = sorted(by_job[job], key=lambda i: i.table)
            if job and len(group) > 1:
                lines.append(f"  job {job}: {plural(len(group), 'table', 'tables')}")
                lines.extend(f"    {line(i, detail.checked_at)}" for i in group)
            else:
                lines.extend(f"  {line(i, detail.checked_at)}" + (f" [job {job}]" if job else "") for i in group)
        lines.append("")
    lines.append(
        "Due times and usual lateness are learnt from each table's history in the ETL log; set "
        "[datasets.<name>.freshness] schedule / tolerance to override them (docs/alerts.md)."
    )
    return subject[:99], "\n".join(lines) + "\n"


def send(rt: StageRuntime, detail: LoadLogChecked) -> dict:
    """Publish the email on the alerts topic; the result fields of ``NotificationSent``."""
    rt.settings.require("alerts_topic_arn")
    subject, body = message(detail)
    kinds = sorted({i.kind for i in detail.incidents}, key=_ORDER.__getitem__)
    response = rt.clients("sns").publish(
        TopicArn=rt.settings.alerts_topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes={
            "dataset": {"DataType": "String", "StringValue": detail.dataset},
            "run_id": {"DataType": "String", "StringValue": detail.run_id},
            "kind": {"DataType": "String", "StringValue": "load_log"},
            "incident_kinds": {"DataType": "String", "StringValue": ",".join(kinds)},
            "severity": {
                "DataType": "String",
                "StringValue": "high" if kinds[0] in ("missing_load", "empty_load") else "medium",
            },
        },
    )
    return {
        "message_id": response["MessageId"],
        "anomaly_count": len(detail.incidents),
        "suppressed_count": 0,
        "kind": "alert",
    }
