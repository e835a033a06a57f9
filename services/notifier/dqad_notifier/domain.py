"""Notifier: one readable email digest per scored run, and operator alerts for failed stages.

An alert is worth what its reader can do with it, so the digest (plain text: SNS email) says
*what broke, how far from normal and since when*, worst first, grouped by table, with a link to
the report and, per anomaly, two signed links to say "expected" or "confirmed incident".

No noise:

* a run with nothing new to say sends nothing (an optional daily heartbeat says "all clear");
* an anomaly already mailed is not mailed again, a continuing incident only after
  ``realert_after_hours`` (:mod:`dqad_notifier.state`, remembered per dataset in S3);
* at most one email per event: the send runs under Powertools idempotency in DynamoDB keyed on
  what the producer set (run id, detail-type, contract version; for failures also the stage and
  the error), never on the SQS message id, so a redelivered or replayed event returns the first
  result instead of mailing twice.

The digest and every channel (:mod:`dqad_notifier.channels`: Slack, Teams, a signed webhook) lead
with the run's *incidents* (:mod:`dqad.incidents`: "sales.orders loaded empty"), the metric detail
below. A channel that fails is retried, then reported on the operator topic; it never stops the
email or the other channels.

StageFailed events go to the *operator* topic as a separate message: which stage, which error,
where the input event is and the exact ``dqad replay`` command that re-runs it.

The scores are read with pyarrow alone into typed rows (:mod:`dqad_notifier.scores`), only in
:func:`_send_alert`: the notifier ships without pandas, and its operator alert (a StageFailed) and
feedback page do not even load pyarrow.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aws_lambda_powertools import Logger

from dqad import incidents as inc
from dqad import signing
from dqad.contract import AnomaliesScored, EventDetail, LoadLogChecked, NotificationSent, StageFailed
from dqad.datasets import Channel, Dataset
from dqad.incidents import Incident, metric_label
from dqad.report import SEVERITY_ORDER, deviation, rank_order, severity_counts
from dqad.signing import feedback_link, make_claim
from dqad.stage import StageRuntime
from dqad.topology import Names
from dqad.wording import fmt_value, plural
from dqad_notifier import channels
from dqad_notifier.channels.message import Message
from dqad_notifier.scores import ScoredPoint, read_points
from dqad_notifier.state import Decision, StateStore, decide

logger = Logger(service="dqad-notifier")

PRESIGN_MAX_S = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer
IDEMPOTENCY_TTL_S = 30 * 24 * 3600
RULE = "-" * 64
FeedbackLinker = Callable[[str, str, str], str]  # (series, timestamp ISO, label) -> URL


def report_link(rt: StageRuntime, detail: AnomaliesScored, expiry_s: int) -> str | None:
    """A presigned link to this run's report, and nothing else.

    The URI comes from an event; presigning whatever it names would hand out any object the
    notifier's role can read (alert state, other runs). Only ``runs/<dataset>/<run_id>/report.html``
    in the deployment's own bucket is signed; anything else is logged and left out of the email.
    """
    if not detail.report:
        return None
    expected = rt.storage.uri(f"runs/{detail.dataset}/{detail.run_id}/report.html")
    if detail.report != expected:
        logger.warning("report URI is not this run's report; no link sent", extra={"uri": detail.report[:300]})
        return None
    return rt.storage.presign(expected, expiry_s)


def report_link_lifetime(credentials: Any, requested_s: int, now: float | None = None) -> tuple[int, bool]:
    """How long a presigned report link really lives: ``(seconds, ends_with_the_session)``.

    A URL presigned with temporary credentials stops working when they expire, whatever its
    ``ExpiresIn`` says. When the credentials carry their expiry (assumed roles, container
    credentials), the lifetime is the shorter of the two. A Lambda function's role credentials come
    from the environment with no expiry to read: then the requested lifetime is only an upper bound,
    and the email must say so (``ends_with_the_session``).
    """
    if credentials is None or not getattr(credentials, "token", None):
        return requested_s, False  # long-term keys: the URL lives as long as it says
    expiry = getattr(credentials, "_expiry_time", None)  # botocore's RefreshableCredentials
    if expiry is None:
        return requested_s, True
    remaining = int(expiry.timestamp() - (now if now is not None else time.time()))
    return max(0, min(requested_s, remaining)), False


# -- the digest (pure) -----------------------------------------------------------------------------
@dataclass
class DigestContext:
    """Everything the digest says besides the anomalies themselves."""

    dataset: str
    run_id: str
    scored_rows: int
    model_version: str
    report_link: str | None
    report_link_expiry_s: int
    max_in_body: int
    realert_after_hours: float
    min_severity: str = "low"
    repeated: int = 0
    continuing: int = 0
    below_threshold: int = 0
    feedback: FeedbackLinker | None = None  # signed links; None: show the `dqad feedback` command
    cli_flags: str = ""  # extra flags for the command (e.g. " --aws" on a deployment)
    incidents: Sequence[Incident] = field(default_factory=tuple)  # what happened, led with (worst first)
    report_uri: str = ""  # where the report stays when its link has expired
    report_link_session_bound: bool = False  # the link may end earlier, with the notifier's session


def _ascii(text: str) -> str:
    """SNS subjects must be printable ASCII, under 100 characters, without line breaks."""
    return re.sub(r"[^\x20-\x7e]", "?", text)[:99]


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return plural(round(hours / 24), "day", "days") if hours >= 48 else plural(round(hours), "hour", "hours")


def _iso(ts: datetime) -> str:
    """The exact timestamp of a point, as the label key expects it (UTC, no offset)."""
    return (ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts).isoformat()


class _Headline(NamedTuple):
    """The subject and the opening lines: the run's incidents when it has any, else its anomaly counts."""

    subject: str
    lines: list[str]


def digest(alert: list[ScoredPoint], ctx: DigestContext) -> tuple[str, str]:
    """Subject and plain-text body. ``alert`` holds the anomalies to mail."""
    order = rank_order(
        [p.severity for p in alert], [p.score for p in alert], [p.series for p in alert], [p.group for p in alert]
    )
    ranked = [alert[i] for i, _ in order]
    head = _headline(ranked, ctx)
    shown = ranked[: ctx.max_in_body]
    lines = head.lines + _report_lines(ctx)
    if ctx.incidents and shown:
        lines += ["Metric detail:", ""]
    lines += _table_lines(ranked, shown, ctx)
    if len(ranked) > len(shown):
        lines += [f"... and {plural(len(ranked) - len(shown), 'more anomaly', 'more anomalies')} in the report.", ""]
    lines += _not_repeated_lines(ctx)
    if ctx.feedback is None:
        lines += [
            "Your verdict teaches dqad: mark a point 'normal' and similar points stop being flagged;",
            "use --label anomaly to confirm an incident.",
            "",
        ]
    lines += [
        "--",
        f"dqad data-quality alerts for dataset {ctx.dataset}. Ask your data team to change who receives them.",
    ]
    return head.subject, "\n".join(lines)


def _headline(ranked: list[ScoredPoint], ctx: DigestContext) -> _Headline:
    n = len(ranked)
    counts = severity_counts(p.severity for p in ranked)
    new_word = "new " if ctx.repeated or ctx.continuing else ""
    anomalies_text = plural(n, new_word + "anomaly", new_word + "anomalies")
    by_severity = ", ".join(f"{c} {s}" for s, c in counts.items())
    run_line = f"Run {ctx.run_id}: {ctx.scored_rows:,} points scored, model {ctx.model_version}."
    if not ctx.incidents:
        worst_count = next(iter(counts.items()), ("", 0))
        subject = f"[dqad] {ctx.dataset}: {anomalies_text} ({worst_count[1]} {worst_count[0]}) - run {ctx.run_id}"
        lines = [f"dqad found {anomalies_text} in {ctx.dataset}: {by_severity}.", run_line, ""]
        return _Headline(_ascii(subject), lines)
    kinds = list(dict.fromkeys(i.kind.words for i in ctx.incidents))
    named = ", ".join(kinds[:3]) + (f" +{len(kinds) - 3} more" if len(kinds) > 3 else "")
    lines = [
        f"dqad found {plural(len(ctx.incidents), 'incident', 'incidents')} in {ctx.dataset}"
        + (f" ({anomalies_text}: {by_severity})." if n else "."),
        run_line,
        "",
        "What happened:",
        *(line for i in ctx.incidents for line in incident_lines(i)),
        "",
    ]
    return _Headline(_ascii(f"[dqad] {ctx.dataset}: {named} - run {ctx.run_id}"), lines)


def _report_lines(ctx: DigestContext) -> list[str]:
    """The report link, with how long it works: a link that died with the session must not look broken."""
    if not ctx.report_link:
        return []
    valid = _duration(ctx.report_link_expiry_s)
    if not ctx.report_link_session_bound:
        return [f"Report with a plot of every anomaly (link valid {valid}):", ctx.report_link, ""]
    return [
        f"Report with a plot of every anomaly (link valid at most {valid}: it is signed with the notifier's",
        "temporary AWS credentials and stops working when they expire, which can be within hours):",
        ctx.report_link,
        f"The report stays at {ctx.report_uri} (open it in the S3 console).",
        "",
    ]


def _table_lines(ranked: list[ScoredPoint], shown: list[ScoredPoint], ctx: DigestContext) -> list[str]:
    """The anomalies shown, under one heading per table; a table's count covers the ones not shown too."""
    lines: list[str] = []
    for group in dict.fromkeys(p.group for p in shown):  # tables in rank order
        in_group = [p for p in ranked if p.group == group]
        lines += [
            RULE,
            f"{group}: {plural(len(in_group), 'anomaly', 'anomalies')}, worst {in_group[0].severity}",
            RULE,
            "",
        ]
        for point in shown:
            if point.group == group:
                lines += _anomaly_lines(point, group, ctx)
    return lines


def _not_repeated_lines(ctx: DigestContext) -> list[str]:
    """What this email leaves out on purpose, so that a reader does not take it for everything."""
    not_mailed = []
    if ctx.repeated:
        not_mailed.append(f"{plural(ctx.repeated, 'anomaly', 'anomalies')} already sent in an earlier alert")
    if ctx.continuing:
        not_mailed.append(
            f"{plural(ctx.continuing, 'anomaly', 'anomalies')} of incidents already reported "
            f"(reminded every {ctx.realert_after_hours:g} h while they last)"
        )
    if ctx.below_threshold:
        not_mailed.append(f"{ctx.below_threshold} below the minimum severity '{ctx.min_severity}'")
    if not not_mailed:
        return []
    return ["Not repeated here: " + "; ".join(not_mailed) + ". All are in the report.", ""]


def incident_lines(incident: Incident) -> list[str]:
    """An incident in the email: severity, kind and summary; a merged job's tables beneath it."""
    when = f"load of {incident.timestamp:%Y-%m-%d %H:%M} UTC"
    lines = [f"  [{(incident.severity or 'low').upper()}] {incident.kind.words}: {incident.summary} ({when})"]
    return lines + [f"      - {d}" for d in incident.details]


def _anomaly_lines(row: ScoredPoint, group: str, ctx: DigestContext) -> list[str]:
    series, ts = row.series, _iso(row.timestamp)
    dev = deviation(row.value, row.expected_low, row.expected_high)
    lines = [
        f"[{str(row.severity).upper()}] {metric_label(series, group)}, load of {row.timestamp:%Y-%m-%d %H:%M} UTC",
        f"  Actual:   {fmt_value(row.value)}",
        f"  Expected: {fmt_value(row.expected_low)} to {fmt_value(row.expected_high)}" + (f" ({dev})" if dev else ""),
    ]
    if row.reasons:
        lines.append(f"  Why:      {row.reasons}")
    if row.ongoing_since is not None:
        lines.append(f"  Ongoing since {row.ongoing_since:%Y-%m-%d %H:%M} UTC (reminder).")
    if ctx.feedback is not None:
        lines += [
            f"  Expected - not an anomaly: {ctx.feedback(series, ts, 'normal')}",
            f"  Confirmed incident:        {ctx.feedback(series, ts, 'anomaly')}",
        ]
    else:
        lines.append(
            f"  Not an anomaly? dqad feedback --dataset {ctx.dataset} --series {shlex.quote(series)} "
            f"--timestamp {ts} --label normal{ctx.cli_flags}"
        )
    return [*lines, ""]


def heartbeat_message(dataset: str, run_id: str, scored_rows: int, suppressed: int) -> tuple[str, str]:
    subject = _ascii(f"[dqad] {dataset}: all clear - run {run_id}")
    body = [
        f"dqad scored {scored_rows:,} points of {dataset} (run {run_id}) and found nothing new to report.",
    ]
    if suppressed:
        body.append(f"{plural(suppressed, 'anomaly was', 'anomalies were')} already reported or below the threshold.")
    body += ["", "This is the daily heartbeat: it proves the pipeline runs. Turn it off with heartbeat = false."]
    return subject, "\n".join(body)


def operator_message(detail: StageFailed, prefix: str, local: bool) -> tuple[str, str]:
    """Subject and body for a failed stage: what, where, and the command that re-runs it."""
    replay = f"dqad replay --run-id {detail.run_id} --stage {detail.stage}"
    if detail.shard is not None:  # a sharded run: the failed shard alone (docs/architecture.md §12)
        replay += f" --shard {detail.shard}"
    aws_replay = f"{replay} --aws --prefix {prefix}"
    names = Names(prefix)
    lines = [
        f"The dqad stage '{detail.stage}' failed for dataset {detail.dataset}, run {detail.run_id}.",
        "",
        f"Error:        {detail.error_type}: {detail.message}",
        f"Input event:  {detail.input_event or '(not stored)'}",
        f"Logs:         CloudWatch log group /aws/lambda/{names.function(detail.stage)}",
        f"Dead letters: SQS queue {names.dlq(detail.stage)} (if the record was parked there)",
        f"Failed at:    {detail.produced_at:%Y-%m-%d %H:%M:%S} UTC",
        "",
        "After fixing the cause, re-run the stage from its stored input event:",
        f"  {replay}" if local else f"  {aws_replay}",
    ]
    if local:
        lines.append(f"  (on a deployment: {aws_replay})")
    lines += ["Add --follow (locally) to let the chain continue downstream."] if local else []
    where = f" shard {detail.shard}" if detail.shard is not None else ""
    subject = _ascii(
        f"[dqad] FAILED {detail.stage}{where}: {detail.dataset} run {detail.run_id} ({detail.error_type})"
    )
    return subject, "\n".join(lines)


# -- AWS side ----------------------------------------------------------------------------------------
def _attrs(**values: Any) -> dict:
    out = {}
    for k, v in values.items():
        dtype = "Number" if isinstance(v, int) and not isinstance(v, bool) else "String"
        out[k] = {"DataType": dtype, "StringValue": str(v)}
    return out


def feedback_keys(rt: StageRuntime) -> list[bytes] | None:
    """Signing keys for feedback links, or None when links are not configured (local demo).

    Cached per container for a few minutes: one Secrets Manager call per cold start, and a rotated
    secret is picked up without a redeploy.
    """
    url, arn = rt.settings.feedback_url, rt.settings.feedback_secret_arn
    if not url and not arn:
        return None
    if not (url and arn):
        missing = "DQAD_FEEDBACK_SECRET_ARN" if url else "DQAD_FEEDBACK_URL"
        logger.error(f"feedback links disabled: {missing} is not set; emails show the CLI command instead")
        return None
    return feedback_secret_keys(rt, arn)


def feedback_secret_keys(rt: StageRuntime, arn: str) -> list[bytes]:
    """The keys held in the feedback secret; verifying a link needs only these, not the URL."""
    return signing.secret_keys(rt.clients("secretsmanager"), arn)


def _linker(rt: StageRuntime, dataset: str, run_id: str, ttl_hours: float) -> FeedbackLinker | None:
    keys = feedback_keys(rt)
    if keys is None:
        return None
    base = rt.settings.feedback_url
    now = time.time()

    def link(series: str, timestamp: str, label: str) -> str:
        claim = make_claim(dataset, series, timestamp, label, run_id, ttl_hours * 3600, now=now)
        return feedback_link(base, keys, claim)

    return link


def _is_local(rt: StageRuntime) -> bool:
    return rt.settings.job_runner == "local"


def _save_state(store: StateStore, dataset: str, decision: Decision, etag: str | None) -> None:
    """Remember what was mailed. After a successful publish a failure here must not fail the record
    (a retry would mail again): it is logged as an error instead."""
    try:
        store.save(dataset, decision.state, etag)
    except Exception:
        logger.exception("could not save alert state; repeats of this run's anomalies may be mailed again")


@dataclass(frozen=True)
class _AlertRun:
    """One scored run of a dataset and what the alert state decided about it, read once per event."""

    rt: StageRuntime
    detail: AnomaliesScored
    ds: Dataset
    scores: list[ScoredPoint]
    store: StateStore
    etag: str | None
    decision: Decision
    sns: Any

    def save_state(self) -> None:
        _save_state(self.store, self.ds.name, self.decision, self.etag)


@dataclass(frozen=True)
class _EmailOutcome:
    """The digest's publish: SNS's response, or the error that the record fails with once the channels
    have gone out."""

    response: Any = None  # what boto3's publish returned
    error: Exception | None = None


def _send_alert(rt: StageRuntime, detail: AnomaliesScored) -> dict:
    run = _alert_run(rt, detail)
    decision = run.decision
    total = sum(p.is_anomaly for p in run.scores)
    result = {"message_id": None, "anomaly_count": total, "suppressed_count": decision.suppressed, "kind": "none"}
    if not decision.alert:
        result["message_id"] = _heartbeat(run)
        logger.info("nothing new to mail", extra={"anomalies": total, "suppressed": decision.suppressed})
        run.save_state()
        return result
    ctx = _digest_context(run)
    email = _publish_digest(run, ctx)
    sent = _deliver_channels(run, ctx)
    if email.error is not None:
        raise email.error
    logger.info(
        "alert sent",
        extra={
            "alerted": len(decision.alert),
            "suppressed": decision.suppressed,
            "incidents": len(ctx.incidents),
            "channels": {r.channel: r.status for r in sent},
        },
    )
    return {**result, "message_id": email.response["MessageId"], "kind": "alert"}


def _alert_run(rt: StageRuntime, detail: AnomaliesScored) -> _AlertRun:
    ds = rt.catalog.get(detail.dataset)
    scores = read_points(rt.storage.read_table(detail.scores))
    store = StateStore(rt.clients("s3"), rt.settings.bucket)
    state, etag = store.load(ds.name)
    decision = decide(state, scores, ds.notifier.realert_after_hours, ds.notifier.min_severity)
    rt.settings.require("alerts_topic_arn")
    return _AlertRun(rt, detail, ds, scores, store, etag, decision, rt.clients("sns"))


def _heartbeat(run: _AlertRun) -> str | None:
    """The daily "all clear" of a run with nothing new to mail, at most once a day: its SNS message id,
    or None when none is due."""
    today = datetime.now(UTC).date().isoformat()
    state = run.decision.state
    if not run.ds.notifier.heartbeat or state.last_heartbeat == today:
        return None
    name, run_id = run.ds.name, run.detail.run_id
    subject, body = heartbeat_message(name, run_id, run.detail.scored_rows, run.decision.suppressed)
    response = run.sns.publish(
        TopicArn=run.rt.settings.alerts_topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes=_attrs(dataset=name, severity="none", anomaly_count=0, run_id=run_id, kind="heartbeat"),
    )
    state.last_heartbeat = today
    return response["MessageId"]


def _digest_context(run: _AlertRun) -> DigestContext:
    rt, detail, ds, decision, opts = run.rt, run.detail, run.ds, run.decision, run.ds.notifier
    expiry = min(rt.settings.report_link_expiry_s, PRESIGN_MAX_S)
    if rt.settings.report_link_expiry_s > PRESIGN_MAX_S:
        logger.warning("DQAD_REPORT_LINK_EXPIRY_S above 7 days; presigned links are capped at 7 days")
    lifetime, session_bound = report_link_lifetime(rt.clients.credentials(), expiry)
    ctx = DigestContext(
        dataset=ds.name,
        run_id=detail.run_id,
        scored_rows=detail.scored_rows,
        model_version=detail.model_version,
        report_link=report_link(rt, detail, expiry),
        report_link_expiry_s=lifetime,
        report_uri=detail.report or "",
        report_link_session_bound=session_bound,
        max_in_body=opts.max_in_body,
        realert_after_hours=opts.realert_after_hours,
        min_severity=opts.min_severity,
        repeated=decision.repeated,
        continuing=decision.continuing,
        below_threshold=decision.below_threshold,
        feedback=_linker(rt, ds.name, detail.run_id, opts.feedback_link_expiry_hours),
        cli_flags="" if _is_local(rt) else " --aws",
    )
    ctx.incidents = alerted_incidents(run_incidents(rt, detail, ds, run.scores), decision.alert)
    return ctx


def _publish_digest(run: _AlertRun, ctx: DigestContext) -> _EmailOutcome:
    """Mail the digest and remember what was mailed. A failed publish is returned, not raised: the
    channels must not depend on the email."""
    alert = run.decision.alert
    subject, body = digest(alert, ctx)
    worst = min((p.severity for p in alert), key=lambda s: SEVERITY_ORDER.get(s, 3))
    try:
        response = run.sns.publish(
            TopicArn=run.rt.settings.alerts_topic_arn,
            Subject=subject,
            Message=body,
            MessageAttributes=_attrs(
                dataset=run.ds.name,
                severity=worst or "low",
                anomaly_count=len(alert),
                run_id=run.detail.run_id,
                kind="alert",
            ),
        )
        run.save_state()
    except Exception as exc:  # the channels still go out; the record then fails and the email is retried
        return _EmailOutcome(error=exc)
    return _EmailOutcome(response=response)


def _deliver_channels(run: _AlertRun, ctx: DigestContext) -> list[channels.ChannelResult]:
    message = Message(
        dataset=run.ds.name,
        run_id=run.detail.run_id,
        incidents=ctx.incidents,
        anomalies=run.decision.alert,
        report_link=ctx.report_link,
        feedback=ctx.feedback,
        cli_flags=ctx.cli_flags,
    )
    report_failure = functools.partial(_report_channel_failure, run.rt, run.ds, run.detail.run_id)
    return channels.deliver_all(run.rt, run.ds, message, report_failure)


def run_incidents(rt: StageRuntime, detail: AnomaliesScored, ds: Dataset, scores: list[ScoredPoint]) -> list[Incident]:
    """The run's incidents: the scorer's ``incidents.json`` (checked against its sha256), or, for an
    event from before incidents existed, named here from the scores (without stuck values and drift,
    which need the history)."""
    ref = detail.incidents
    expected = rt.storage.uri(f"runs/{detail.dataset}/{detail.run_id}/incidents.json")
    if ref is not None and ref.uri == expected:
        return inc.loads(rt.storage.get_bytes(ref.uri, sha256=ref.sha256))
    if ref is not None:
        logger.warning(
            "incidents URI is not this run's; naming incidents from the scores", extra={"uri": ref.uri[:300]}
        )
    return inc.find_incidents(scores, ds.incidents.rules(), dataset=ds.name)


def alerted_incidents(incidents: Sequence[Incident], alert: Sequence[ScoredPoint]) -> list[Incident]:
    """The incidents worth telling now: those with a point being alerted (the others were told
    before, or are below the minimum severity), and those with no points at all (a late load)."""
    keys = {(p.series, p.timestamp) for p in alert}
    return [i for i in incidents if not i.points() or i.points() & keys]


def channel_failure_message(dataset: str, run_id: str, channel: Channel, error: str) -> tuple[str, str]:
    subject = _ascii(f"[dqad] CHANNEL FAILED {channel.kind} {channel.label}: {dataset} run {run_id}")
    body = "\n".join(
        [
            f"dqad could not deliver run {run_id} of dataset {dataset} to the {channel.kind} channel "
            f"'{channel.label}' (secret {channel.secret}).",
            "",
            f"Error: {error}",
            "",
            "The email and the other channels were sent on their own. Check the webhook URL in the secret",
            "and that the endpoint accepts the message; the run's report holds everything the message said.",
        ]
    )
    return subject, body


def _report_channel_failure(rt: StageRuntime, ds: Dataset, run_id: str, channel: Channel, error: str) -> None:
    """A failed channel on the operator topic. Never raises: the alert itself went out."""
    try:
        rt.settings.require("operator_topic_arn")
        subject, body = channel_failure_message(ds.name, run_id, channel, error)
        rt.clients("sns").publish(
            TopicArn=rt.settings.operator_topic_arn,
            Subject=subject,
            Message=body,
            MessageAttributes=_attrs(
                dataset=ds.name,
                stage="notifier",
                error_type="ChannelDeliveryFailed",
                channel=channel.label,
                run_id=run_id,
                severity="high",
                kind="operator",
            ),
        )
    except Exception:
        logger.exception("could not report a failed channel on the operator topic", extra={"channel": channel.label})


def _send_operator_alert(rt: StageRuntime, detail: StageFailed) -> dict:
    rt.settings.require("operator_topic_arn")
    subject, body = operator_message(detail, rt.settings.bus_name, _is_local(rt))
    response = rt.clients("sns").publish(
        TopicArn=rt.settings.operator_topic_arn,
        Subject=subject,
        Message=body,
        MessageAttributes=_attrs(
            dataset=detail.dataset,
            stage=detail.stage,
            error_type=detail.error_type,
            run_id=detail.run_id,
            severity="high",
            kind="operator",
        ),
    )
    return {"message_id": response["MessageId"], "anomaly_count": 0, "suppressed_count": 0, "kind": "operator"}


def idempotency_key(detail: EventDetail) -> dict:
    """What makes two deliveries "the same email": set by the producer, never the SQS message id.

    A failure is keyed by stage and error too: two stages failing in one run are two messages, and
    a replay that fails differently is worth a new one.
    """
    key = {"run_id": detail.run_id, "kind": detail.detail_type, "version": detail.version}
    if isinstance(detail, StageFailed):
        error = hashlib.sha256(f"{detail.error_type}\x1f{detail.message}".encode()).hexdigest()[:16]
        key["kind"] = f"{detail.detail_type}/{detail.stage}/{error}"
    return key


def _once(rt: StageRuntime, detail: EventDetail, send: Callable[[StageRuntime, Any], dict], context: Any) -> dict:
    """Run ``send`` at most once per :func:`idempotency_key`, remembered in DynamoDB."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    rt.settings.require("idempotency_table")
    persistence = DynamoDBPersistenceLayer(
        table_name=rt.settings.idempotency_table, boto3_client=rt.clients("dynamodb")
    )
    config = IdempotencyConfig(
        event_key_jmespath="[run_id, kind, version]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_S,
    )

    @idempotent_function(data_keyword_argument="key", persistence_store=persistence, config=config)
    def once(key: dict) -> dict:
        return send(rt, detail)

    if context is not None:
        # Lets Powertools expire an in-progress record when this invocation times out.
        config.register_lambda_context(context)
        return once(key=idempotency_key(detail))
    with warnings.catch_warnings():
        # Local runtime: no Lambda context, so no remaining time to register; the record then
        # relies on expires_after_seconds alone, which is what we want outside Lambda.
        warnings.filterwarnings("ignore", message="Couldn't determine the remaining time left")
        return once(key=idempotency_key(detail))


def notify(rt: StageRuntime, detail: EventDetail, context: Any = None) -> NotificationSent:
    send: Callable[[StageRuntime, Any], dict] = _send_operator_alert if isinstance(detail, StageFailed) else _send_alert
    if isinstance(detail, LoadLogChecked):  # late / missing / arrived / empty loads: dqad_notifier.freshness
        from dqad_notifier import freshness

        send = freshness.send
    result = _once(rt, detail, send, context)
    event = NotificationSent(run_id=detail.run_id, dataset=detail.dataset, **result)
    rt.publisher.publish(event)
    return event


def record_handler(context: Any) -> Callable[[StageRuntime, EventDetail], NotificationSent]:
    """:func:`notify` bound to the invocation's Lambda context, in the shape ``run_batch`` expects."""
    return functools.partial(notify, context=context)
