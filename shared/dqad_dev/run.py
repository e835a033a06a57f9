"""``dqad run --datasets FILE``: one run of the whole chain on your own data, on this machine.

The chain is the demo's: the embedded runtime (:mod:`dqad_dev.local`, moto in this process) with
the real stage handlers, bus rules and queues. What changes is where the data and the memory are:

* the data comes from the user's source as the catalog declares it (a file, or PostgreSQL /
  Aurora through a DSN in an environment variable), read by the real fetcher;
* the bucket lives in a **state folder** (``./dqad-state/`` by default) between runs: it is
  loaded into the embedded bucket before the run and written back after it, so the history of
  runs, the champion model, the notifier's alert memory and human feedback persist. Run it today
  and tomorrow, and tomorrow's run reuses the model and does not mail again what was mailed today.

A run starts as a load's ``LoadCompleted`` does on AWS (the event the fetcher's Aurora entry point
publishes for a matching log row), for the latest load in the source unless ``--loaded-at`` says
otherwise. Feedback links in the message point at ``dqad serve`` (:mod:`dqad_dev.serve`), signed
with a secret kept in the state folder, exactly as the deployed notifier signs them.

What is not the bucket lives under ``<state>/.dqad-local/`` (the signing secret, the resource
prefix), which :meth:`dqad_dev.local.LocalCloud.import_bucket` never uploads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dqad import incidents
from dqad.incidents import Incident
from dqad.topology import STAGES
from dqad.wording import fmt_value
from dqad_dev.errors import USAGE_ERROR, UserError

if TYPE_CHECKING:
    import pandas as pd

    from dqad.datasets import Dataset
    from dqad.storage import Storage
    from dqad_dev.local import LocalCloud, PumpReport

DEFAULT_STATE = "dqad-state"
RUN_PREFIX = "dqad-local"
DEMO_PREFIX = "dqad-demo"
DEFAULT_PORT = 8765
LOCAL_DIR = ".dqad-local"
SECRET_NAME = "dqad-local-feedback"


# -- the state folder --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateDir:
    """A folder laid out like the bucket, plus ``.dqad-local/`` for what only this machine keeps."""

    root: Path

    @property
    def local(self) -> Path:
        return self.root / LOCAL_DIR

    def prefix(self) -> str:
        """The resource prefix the state's stored events were written under (their URIs name the bucket).

        Recorded when the state is saved; a folder without the record but with events was written
        by an older ``dqad demo``; an empty or new folder gets the prefix of ``dqad run``.
        """
        marker = self.local / "state.json"
        if marker.is_file():
            return str(json.loads(marker.read_text()).get("prefix", RUN_PREFIX))
        return DEMO_PREFIX if (self.root / "events").is_dir() else RUN_PREFIX

    def remember_prefix(self, prefix: str) -> None:
        self.local.mkdir(parents=True, exist_ok=True)
        (self.local / "state.json").write_text(json.dumps({"prefix": prefix}) + "\n")

    def feedback_secret(self) -> str:
        """The key feedback links are signed with, created on first use (readable by this user only)."""
        path = self.local / "feedback-secret"
        if not path.is_file():
            self.local.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def run_dir(self, dataset: str, run_id: str) -> Path:
        return self.root / "runs" / dataset / run_id


def resolve_state(given: str | None) -> StateDir:
    """``--state``, else ``./dqad-state`` when it exists, else the demo's ``./dqad-demo/state``."""
    if given:
        return StateDir(Path(given))
    if Path(DEFAULT_STATE).is_dir() or not Path("dqad-demo/state").is_dir():
        return StateDir(Path(DEFAULT_STATE))
    return StateDir(Path("dqad-demo/state"))


def feedback_base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/feedback"


@contextmanager
def embedded(
    state: StateDir,
    *,
    catalog_text: str | None = None,
    port: int | None = DEFAULT_PORT,
    prefix: str | None = None,
    save: bool = True,
) -> Iterator[LocalCloud]:
    """The embedded runtime loaded with the state folder (and written back to it on success).

    ``catalog_text`` replaces the catalog; it is stored under a key carrying its digest as well as
    at ``config/datasets.toml``, because a stage runtime caches the catalog it read for a minute,
    keyed by the settings: a changed catalog gets new settings, never a stale cached copy.
    ``port`` turns on signed feedback links to ``dqad serve`` on that port.
    """
    from dqad.storage import Storage
    from dqad_dev.local import LocalCloud

    name = prefix or state.prefix()
    with LocalCloud(name) as cloud:
        if state.root.is_dir():
            cloud.import_bucket(state.root)
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        if catalog_text is not None:
            digest = hashlib.sha256(catalog_text.encode()).hexdigest()[:16]
            storage.put_bytes(storage.uri("config/datasets.toml"), catalog_text.encode())
            storage.put_bytes(storage.uri(f"config/catalog-{digest}.toml"), catalog_text.encode())
            os.environ["DQAD_DATASETS_URI"] = storage.uri(f"config/catalog-{digest}.toml")
        if port is not None:
            arn = cloud.client("secretsmanager").create_secret(
                Name=SECRET_NAME, SecretString=state.feedback_secret()
            )["ARN"]
            os.environ["DQAD_FEEDBACK_SECRET_ARN"] = arn
            os.environ["DQAD_FEEDBACK_URL"] = feedback_base_url(port)
        yield cloud  # LocalCloud restores every DQAD_* variable on exit
        if save:
            state.root.mkdir(parents=True, exist_ok=True)
            cloud.export_bucket(state.root)
            state.remember_prefix(name)


# -- driving the chain -------------------------------------------------------------------------------
Progress = Callable[[str], None]


def progress_printer(stream: TextIO | None = None) -> Progress | None:
    """A line per finished stage on stderr when it is a terminal; nothing when output is captured."""
    out = stream or sys.stderr
    if not out.isatty():
        return None

    def show(line: str) -> None:
        print(line, file=out, flush=True)

    return show


def drive_chain(cloud: LocalCloud, progress: Progress | None = None, deadline_s: float = 600) -> PumpReport:
    """Run every stage's queue to quiet, stage after stage, telling ``progress`` as each one ends.

    Events only flow downstream (the trainer's job-state event returns to the trainer's own
    queue, failures go to the notifier, the last stage), so draining the stages in chain order is
    the same run as pumping them together; a last pass over all queues makes sure nothing is left.
    """
    from dqad_dev.local import PumpReport

    total = PumpReport()
    started = time.perf_counter()
    for st in STAGES:
        with stage_bar(st.name, progress is not None):
            part = cloud.pump(deadline_s=deadline_s, only=(st.name,))
        _merge(total, part)
        if progress and part.invocations.get(st.name):
            failed = part.failures.get(st.name, 0)
            note = f", {failed} failed record(s)" if failed else ""
            progress(f"  {st.name:<9} done in {part.seconds.get(st.name, 0.0):.2f} s{note}")
    _merge(total, cloud.pump(deadline_s=deadline_s))
    total.wall_s = time.perf_counter() - started
    return total


#: the stages whose long work draws a bar: (description, unit, module, the module's progress hook)
STAGE_BARS = {
    "fetcher": ("fetching", "rows", "dqad_fetcher.domain", "FETCH_PROGRESS"),  # the rows each fetch reads
    "trainer": ("training", "fits", "dqad_trainer.runners", "JOB_PROGRESS"),  # each job's candidates x folds
}


@contextmanager
def stage_bar(stage: str, show: bool) -> Iterator[None]:
    """With ``show``, a bar of the stage's long work while it is pumped (on a terminal only, see
    dqad_dev.progress): the rows each fetch reads, the candidates and folds each local training job
    fits (its subprocess reports them, dqad_trainer.runners.run_job). The hook is set in this process
    only and restored afterwards."""
    if not show or stage not in STAGE_BARS:
        yield
        return
    import importlib

    from dqad_dev.progress import progress_bar

    desc, unit, module_name, hook = STAGE_BARS[stage]
    module = importlib.import_module(module_name)
    with progress_bar(desc, unit) as tell:
        saved = getattr(module, hook)
        setattr(module, hook, tell)
        try:
            yield
        finally:
            setattr(module, hook, saved)


def _merge(total: PumpReport, part: PumpReport) -> None:
    for name, n in part.invocations.items():
        total.invocations[name] += n
    for name, s in part.seconds.items():
        total.seconds[name] += s
    for name, n in part.failures.items():
        total.failures[name] += n


def start_run(ds: Dataset, loaded_at: datetime) -> str:
    """Publish the load's ``LoadCompleted`` as the fetcher's Aurora entry point does; its run id.

    The log id is derived from the load time, so running the same load again is the same run (as
    a re-delivered log row is on AWS): the stages rewrite the same outputs and nothing is mailed twice.
    """
    from dqad.contract import LoadCompleted, make_run_id
    from dqad.stage import runtime

    log_id = f"local-{loaded_at:%Y%m%dT%H%M%S}"
    table = next((t for t in (*ds.trigger.table_names, *ds.trigger.job_names) if not set(t) & set("*?[")), ds.name)
    event = LoadCompleted(
        run_id=make_run_id(ds.name, log_id, loaded_at),
        dataset=ds.name,
        log_id=log_id,
        job_name="dqad run",
        table_name=table,
        loaded_at=loaded_at,
        status="SUCCESS",
    )
    runtime("fetcher").publisher.publish(event)
    return event.run_id


# -- what a run produced -----------------------------------------------------------------------------
@dataclass
class RunResult:
    """One run as the user sees it: anomalies, model, message, where the files are."""

    dataset: str
    run_id: str
    status: str  # as dqad_dev.listen.RunOutcome: notified | failed | no-run | incomplete
    detail: dict[str, Any] = field(default_factory=dict)  # NotificationSent or StageFailed detail
    anomalies: pd.DataFrame | None = None
    scored_rows: int = 0
    model_version: str = ""
    model_reused: bool | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)

    @property
    def failure(self) -> str:
        d = self.detail
        if self.status == "failed":
            return f"failed at {d.get('stage')}: {d.get('error_type')}: {d.get('message')}"
        if self.status == "incomplete":
            return f"did not finish (events: {', '.join(d.get('events', [])) or 'none'})"
        return ""


def collect(storage: Storage, dataset: str, run_id: str) -> RunResult:
    """Read a run's outcome and results from its stored events and files."""
    from dqad_dev.listen import run_outcome

    outcome = run_outcome(storage, run_id)
    result = RunResult(dataset, run_id, outcome.status, dict(outcome.detail))
    events = storage.uri(f"events/{run_id}/")
    stored = {u.rsplit("/", 1)[-1]: u for u in storage.list_uris(events)}
    if "ModelTrained.json" in stored:
        model = storage.get_json(stored["ModelTrained.json"])["detail"]
        result.model_version, result.model_reused = model["model"]["version"], bool(model["reused"])
    if "AnomaliesScored.json" in stored:
        scored = storage.get_json(stored["AnomaliesScored.json"])["detail"]
        result.scored_rows = int(scored["scored_rows"])
        scores = storage.read_parquet(scored["scores"]["uri"])
        flagged = scores[scores["is_anomaly"].astype(bool)]
        result.anomalies = flagged.sort_values("score", ascending=False)
        if scored.get("incidents"):
            ref = scored["incidents"]
            result.incidents = incidents.loads(storage.get_bytes(ref["uri"], sha256=ref["sha256"]))
    return result


def inbox_by_run(cloud: LocalCloud) -> dict[str, list[dict[str, Any]]]:
    """The SNS messages delivered during this process, by the run id their subject names."""
    out: dict[str, list[dict[str, Any]]] = {}
    for message in cloud.inbox():
        subject = str(message.get("Subject", ""))
        run = subject.rsplit("run ", 1)[-1].split(" ", 1)[0] if "run " in subject else ""
        out.setdefault(run, []).append(message)
    return out


def save_outputs(state: StateDir, result: RunResult) -> None:
    """Name the report and write the message next to it, in the state folder (the bucket's mirror)."""
    folder = state.run_dir(result.dataset, result.run_id)
    if (folder / "report.html").is_file():
        result.outputs["report"] = folder / "report.html"
    if result.messages:
        path = folder / "sns-message.json"
        body = result.messages[0] if len(result.messages) == 1 else result.messages
        path.write_text(json.dumps(body, indent=2) + "\n")
        result.outputs["message"] = path


# -- printing (shared with the demo) -----------------------------------------------------------------
def print_incidents(found: list[Incident], out: Callable[[str], None] = print) -> None:
    """The run's incidents grouped by kind (in the order of :class:`dqad.incidents.Kind`), one line each."""
    order = list(incidents.Kind)
    out(f"Incidents by kind ({len(found)}):")
    for incident in sorted(found, key=lambda i: (order.index(i.kind), i.timestamp, i.summary)):
        out(f"  {incident.kind.words:<17} {incident.summary}")


def print_anomalies(anomalies: pd.DataFrame, out: Callable[[str], None] = print) -> None:
    """The anomaly table: load group, metric, load time, actual value, expected range, score."""
    from dqad.report import metric_name

    header = f"{'table':<22} {'metric':<20} {'time (UTC)':<17} {'actual':>14} {'expected range':>27} {'score':>6}"
    out(header)
    out("-" * len(header))
    for row in anomalies.itertuples(index=False):
        group = str(row.group)
        metric = metric_name(str(row.series), group) if group != str(row.series) else ""
        rng = f"{fmt_value(row.expected_low)} – {fmt_value(row.expected_high)}"
        out(
            f"{group:<22} {metric:<20} {row.timestamp:%Y-%m-%d %H:%M} {fmt_value(row.value):>14} {rng:>27} "
            f"{row.score:>6.2f}"
        )


def print_stage_times(pump: PumpReport, out: Callable[[str], None] = print) -> None:
    out("Time per stage (handler time, s):")
    for st in STAGES:
        out(f"  {st.name:<9} {pump.seconds.get(st.name, 0.0):6.2f}  ({pump.invocations.get(st.name, 0)} batch)")


def print_run(result: RunResult, state: StateDir, port: int, out: Callable[[str], None] = print) -> None:
    n = 0 if result.anomalies is None else len(result.anomalies)
    out(f"\nRun {result.run_id}: {n} {'anomaly' if n == 1 else 'anomalies'} in {result.dataset}")
    if result.failure:
        out(f"  the run {result.failure}")
        return
    if result.incidents:
        out("")
        print_incidents(result.incidents, out)
    if n and result.anomalies is not None:
        out("")
        print_anomalies(result.anomalies, out)
    out("")
    if result.model_version:
        how = "reused the champion" if result.model_reused else "trained a new model"
        out(f"Model: {how} ({result.model_version}), {result.scored_rows:,} points scored")
    d = result.detail
    if d.get("kind") == "alert":
        count = int(d.get("anomaly_count", 0))
        out(f"Message: {count} {'anomaly' if count == 1 else 'anomalies'} sent, {d.get('suppressed_count', 0)} "
            "already alerted or below the threshold (not repeated)")
    elif result.status == "notified":
        suppressed = d.get("suppressed_count", 0)
        out(f"Message: none sent ({suppressed} already alerted or below the threshold)" if suppressed
            else "Message: none sent (nothing to report)")
    for name, path in result.outputs.items():
        out(f"  {name:<8} {path}")
    if n:
        page = f"http://127.0.0.1:{port}/runs/{result.dataset}/{result.run_id}"
        out(f"Mark what is expected: {page}  (start the page with `dqad serve --state {state.root}`)")


# -- the command -------------------------------------------------------------------------------------
def parse_loaded_at(text: str) -> datetime:
    import pandas as pd

    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):
        raise UserError(f"--loaded-at {text!r} is not a date/time (use e.g. 2026-11-30T03:00 or 2026-11-30T03:00Z)")
    ts = ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
    return ts.to_pydatetime()


def latest_load(ds: Dataset, loaded_at: datetime | None) -> datetime:
    """The load to run: ``--loaded-at``, else the newest timestamp in the source (checked on the way)."""
    from dqad_dev.validate import check_source

    summary = check_source(ds)
    if loaded_at is not None:
        return loaded_at
    if summary.latest is None:
        raise UserError(
            f"dataset {ds.name!r}: the source has no rows in the last {ds.history_days:g} days; "
            "pass --loaded-at TIME for an older load"
        )
    return summary.latest


@dataclass
class RunSession:
    """What one ``dqad run`` did: a result per dataset, and the stage times of the whole chain."""

    results: list[RunResult]
    pump: PumpReport
    state: StateDir


def run_datasets(
    catalog_file: str | Path,
    *,
    dataset: str | None = None,
    every: bool = False,
    loaded_at: datetime | None = None,
    state: StateDir | None = None,
    port: int = DEFAULT_PORT,
    progress: Progress | None = None,
) -> RunSession:
    """``dqad run`` without the printing: check, start one run per dataset, drive the chain, collect."""
    from dqad.storage import Storage
    from dqad_dev.validate import read_catalog

    folder = state or StateDir(Path(DEFAULT_STATE))
    catalog = read_catalog(catalog_file)
    chosen = catalog.select(dataset, every)
    loads = [(ds, latest_load(ds, loaded_at)) for ds in chosen]
    if progress:
        progress(f"  sources checked: {', '.join(f'{ds.name} load of {at:%Y-%m-%d %H:%M} UTC' for ds, at in loads)}")
    with embedded(folder, catalog_text=catalog.text(), port=port) as cloud:
        started = [(ds.name, start_run(ds, at)) for ds, at in loads]
        pump = drive_chain(cloud, progress)
        messages = inbox_by_run(cloud)
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        results = [collect(storage, name, run_id) for name, run_id in started]
        for result in results:
            result.messages = messages.get(result.run_id, [])
    for result in results:
        save_outputs(folder, result)
    return RunSession(results, pump, folder)


def cmd_run(args: argparse.Namespace) -> int:
    state = StateDir(Path(args.state))
    loaded_at = parse_loaded_at(args.loaded_at) if args.loaded_at else None
    session = run_datasets(
        args.datasets,
        dataset=args.dataset,
        every=args.all,
        loaded_at=loaded_at,
        state=state,
        port=args.port,
        progress=progress_printer(),
    )
    for result in session.results:
        print_run(result, state, args.port)
    print("")
    print_stage_times(session.pump)
    print(f"  chain wall time: {session.pump.wall_s:.2f} s")
    print(f"\nState kept in {state.root}/ (history, models, alert memory, feedback): run again after the next load.")
    failed = [r for r in session.results if r.failure]
    for r in failed:
        print(f"dqad run: run {r.run_id} of {r.dataset} {r.failure}", file=sys.stderr)
    return USAGE_ERROR if failed else 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the whole chain once on your own data (file or PostgreSQL), keeping state across runs",
        description=(
            "Run the chain (fetcher, labeler, trainer, scorer, notifier) once on the embedded runtime against "
            "the sources of a dataset catalog, for the latest load in the source. History, the champion model, "
            "alert memory and feedback are kept in the state folder, so the next run reuses the model and does "
            "not repeat alerts. Check the catalog first with `dqad validate FILE`."
        ),
    )
    p.add_argument("--datasets", required=True, metavar="FILE", help="the dataset catalog (TOML or JSON)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--dataset", metavar="NAME", help="the dataset to run (needed when the catalog has several)")
    which.add_argument("--all", action="store_true", help="run every dataset of the catalog")
    p.add_argument(
        "--loaded-at",
        metavar="TIME",
        help="the load to run, e.g. 2026-11-30T03:00Z (UTC unless an offset is given; "
        "default: the newest timestamp in the source)",
    )
    p.add_argument("--state", default=DEFAULT_STATE, metavar="DIR", help="folder keeping the state between runs")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of `dqad serve` that feedback links point to")
    p.set_defaults(func=cmd_run)
