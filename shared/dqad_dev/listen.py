"""``dqad listen --dsn DSN``: an INSERT into a local PostgreSQL runs the whole chain.

On Aurora, the trigger's ``aws_lambda.invoke(..., 'Event')`` reaches the fetcher Lambda. Locally,
``sql/local/install.sql``'s stand-in records the call in ``aws_lambda.invocations`` and sends
``NOTIFY dqad_lambda_invocations, '<id>'``. This bridge is the missing hop:

1. ``LISTEN`` on :data:`dqad_dev.sqlinstall.NOTIFY_CHANNEL` first, then catch up on calls recorded while
   nobody listened (NOTIFY is not queued for absent listeners): ``--after-id N``, or by default the
   calls of the last ``--catch-up`` seconds;
2. for each call id (``fetch_invocation``), skip ``DryRun`` calls (Lambda never runs those) and hand
   the payload to the fetcher's aurora entry point, exactly what Lambda would receive;
3. pump the embedded runtime (LocalCloud on moto, seeded with the demo dataset ending now) until
   the chain is quiet, and print each run's outcome: notified, failed (which stage, why), or no run.

Each call is forwarded once per bridge process (ids already handled are remembered), whatever the
order in which concurrent transactions commit. The entry point is found through the topology
(``shared/`` never imports a service).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LISTEN_DSN_ENV = "DQAD_LISTEN_DSN"
LISTEN_PREFIX = "dqad-listen"


@dataclass
class RunOutcome:
    run_id: str
    status: str  # "notified" | "failed" | "no-run" | "incomplete"
    detail: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        d = self.detail
        if self.status == "notified":
            return (
                f"notified ({d.get('kind', 'alert')}): {d.get('anomaly_count', 0)} anomalies, "
                f"{d.get('suppressed_count', 0)} suppressed, message {d.get('message_id') or '-'}"
            )
        if self.status == "failed":
            return f"FAILED at {d.get('stage')}: {d.get('error_type')}: {d.get('message')}"
        if self.status == "no-run":
            return "no downstream run (no new data in the load's window; see the fetcher's log)"
        return f"incomplete: events so far {', '.join(d.get('events', [])) or 'none'}"


@dataclass
class Forwarded:
    invocation_id: int
    payload: dict[str, Any] | None
    runs: list[RunOutcome] = field(default_factory=list)
    skipped: str = ""  # reason, when the call was not forwarded


@dataclass
class ListenResult:
    forwarded: list[Forwarded] = field(default_factory=list)
    skipped: list[Forwarded] = field(default_factory=list)
    timed_out: bool = False


Forward = Callable[[Any], Forwarded]  # takes a dqad_dev.sqlinstall.Invocation


# -- outcome of a run, from the events it stored ---------------------------------------------------
def run_outcome(storage: Any, run_id: str) -> RunOutcome:
    """What became of a run, read from ``events/<run_id>/`` (every event is stored before it is sent)."""
    stored = {u.rsplit("/", 1)[-1]: u for u in storage.list_uris(storage.uri(f"events/{run_id}/"))}
    failures = sorted(name for name in stored if name.startswith("StageFailed"))
    if failures:
        return RunOutcome(run_id, "failed", storage.get_json(stored[failures[0]])["detail"])
    if "NotificationSent.json" in stored:
        return RunOutcome(run_id, "notified", storage.get_json(stored["NotificationSent.json"])["detail"])
    if "DatasetFetched.json" not in stored:
        return RunOutcome(run_id, "no-run", {"events": sorted(stored)})
    return RunOutcome(run_id, "incomplete", {"events": sorted(stored)})


class LocalChain:
    """Forwards a call to the fetcher's aurora entry point on a LocalCloud and runs the chain to quiet."""

    def __init__(self, cloud: Any, *, pump_deadline_s: float = 600) -> None:
        from dqad.storage import Storage
        from dqad.topology import stage
        from dqad_dev.local import load_entry_point

        self.cloud = cloud
        self.storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        self.entry = load_entry_point(stage("fetcher").extra_entry_points["aurora"])
        self.pump_deadline_s = pump_deadline_s

    def __call__(self, invocation: Any) -> Forwarded:
        result = self.entry(invocation.payload, None) or {}
        runs = list(result.get("runs", []))
        if runs:
            self.cloud.pump(deadline_s=self.pump_deadline_s)
        return Forwarded(invocation.id, invocation.payload, [run_outcome(self.storage, r) for r in runs])


# -- the bridge ------------------------------------------------------------------------------------
class Bridge:
    """Reads the stand-in's calls (catch-up, then NOTIFY) and forwards each once."""

    def __init__(self, conn: Any, forward: Forward, out: Callable[[str], None] = print) -> None:
        self.conn = conn
        self.forward = forward
        self.out = out
        self.done: set[int] = set()
        self.result = ListenResult()

    def listen(self) -> None:
        from psycopg import sql

        from dqad_dev import sqlinstall

        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(sqlinstall.NOTIFY_CHANNEL)))

    def pending(self, after_id: int | None, catch_up_s: float) -> list[Any]:
        """Calls recorded before we listened: ids above ``after_id``, else those of the last ``catch_up_s``."""
        from dqad_dev import sqlinstall

        found: list[Any] = []
        cursor = after_id if after_id is not None else 0
        since = None if after_id is not None else datetime.now(UTC) - timedelta(seconds=catch_up_s)
        while batch := sqlinstall.pending_invocations(self.conn, after_id=cursor, limit=1000):
            cursor = batch[-1].id
            found.extend(i for i in batch if since is None or i.called_at >= since)
        return found

    def handle(self, invocation: Any) -> bool:
        """Forward one call unless already done or a DryRun; True when it was forwarded."""
        if invocation.id in self.done:
            return False
        self.done.add(invocation.id)
        payload = invocation.payload
        if str(invocation.invocation_type).strip().lower() == "dryrun":
            self.result.skipped.append(Forwarded(invocation.id, payload, skipped="DryRun"))
            self.out(f"call #{invocation.id}: DryRun, not forwarded (Lambda does not run DryRun calls)")
            return False
        if not isinstance(payload, dict):
            self.result.skipped.append(Forwarded(invocation.id, None, skipped="no JSON object payload"))
            self.out(f"call #{invocation.id}: payload is not a JSON object, not forwarded")
            return False
        label = f"log {payload.get('log_id')} {payload.get('table_name')} {payload.get('status')}"
        self.out(f"call #{invocation.id} to {invocation.function_name} ({label}): forwarding to the fetcher")
        started = time.perf_counter()
        done = self.forward(invocation)
        self.result.forwarded.append(done)
        if not done.runs:
            self.out("  no run: the row concerns no dataset, or was skipped (see the fetcher's log)")
        for run in done.runs:
            self.out(f"  run {run.run_id}: {run.describe()}")
        self.out(f"  ({time.perf_counter() - started:.1f} s)")
        return True

    def serve(
        self,
        *,
        max_events: int | None = None,
        timeout: float | None = None,
        after_id: int | None = None,
        catch_up_s: float = 600,
    ) -> ListenResult:
        from dqad_dev import sqlinstall

        deadline = None if timeout is None else time.monotonic() + timeout

        def enough() -> bool:
            return max_events is not None and len(self.result.forwarded) >= max_events

        self.listen()
        for invocation in self.pending(after_id, catch_up_s):
            if enough():
                return self.result
            self.handle(invocation)
        while not enough():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self.result.timed_out = True
                break
            wait = 1.0 if remaining is None else min(1.0, remaining)
            # Collect first, then query: the notifies() generator holds the connection, so running
            # fetch_invocation inside its loop would wait on ourselves.
            for notify in list(self.conn.notifies(timeout=wait, stop_after=1)):
                try:
                    invocation_id = int(notify.payload)
                except ValueError:
                    self.out(f"ignoring notification with payload {notify.payload!r}")
                    continue
                invocation = sqlinstall.fetch_invocation(self.conn, invocation_id)
                if invocation is None:
                    self.out(f"call #{invocation_id} no longer exists; skipped")
                    continue
                self.handle(invocation)
                if enough():
                    break
        return self.result


def check_stand_in(conn: Any) -> None:
    """Refuse to listen on a database without the local stand-in: nothing would ever arrive."""
    from dqad_dev.errors import UserError

    found = conn.execute("SELECT to_regclass('aws_lambda.invocations') IS NOT NULL").fetchone()
    if not (found and found[0]):
        raise UserError(
            "this database has no aws_lambda.invocations (the local stand-in of Aurora's aws_lambda): install "
            "sql/local/install.sql, sql/local/qe_query_logs.sql and sql/install.sql (README, 'Start the chain from "
            "a real INSERT')"
        )


def serve(
    dsn: str,
    forward: Forward,
    *,
    max_events: int | None = None,
    timeout: float | None = None,
    after_id: int | None = None,
    catch_up_s: float = 600,
    out: Callable[[str], None] = print,
) -> ListenResult:
    """Run a :class:`Bridge` on its own autocommit connection (LISTEN needs no open transaction)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True, application_name="dqad-listen") as conn:
        check_stand_in(conn)
        return Bridge(conn, forward, out).serve(
            max_events=max_events, timeout=timeout, after_id=after_id, catch_up_s=catch_up_s
        )


def listen_local(
    dsn: str,
    *,
    max_events: int | None = None,
    timeout: float | None = None,
    after_id: int | None = None,
    catch_up_s: float = 600,
    seed: int = 7,
    prefix: str = LISTEN_PREFIX,
    out: Callable[[str], None] = print,
    datasets: str | None = None,
    state: str | None = None,
) -> ListenResult:
    """The bridge on the embedded runtime: on the user's catalog (``datasets``, state kept in
    ``state`` as ``dqad run`` keeps it), or seeded with the demo dataset whose last load is now."""
    if datasets is not None:
        return _listen_on_catalog(dsn, datasets, state, max_events=max_events, timeout=timeout, after_id=after_id,
                                  catch_up_s=catch_up_s, out=out)
    from dqad.storage import Storage
    from dqad_dev.demo import DATASET, seed_demo_dataset_until
    from dqad_dev.local import LocalCloud

    with LocalCloud(prefix) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        demo = seed_demo_dataset_until(storage, datetime.now(UTC), seed=seed)
        out(
            f"embedded runtime ready: dataset {DATASET} (table dq.metrics_daily), "
            f"last load {demo.loaded_at:%Y-%m-%d %H:%M} UTC, new-data window {demo.new_window_hours:g} h; "
            "listening on PostgreSQL"
        )
        return serve(
            dsn,
            LocalChain(cloud),
            max_events=max_events,
            timeout=timeout,
            after_id=after_id,
            catch_up_s=catch_up_s,
            out=out,
        )


class SavingChain(LocalChain):
    """:class:`LocalChain` that writes the bucket back to the state folder after each forwarded call,
    so ``dqad serve`` shows the run and the next ``dqad run`` continues from it."""

    def __init__(self, cloud: Any, state: Any) -> None:
        super().__init__(cloud)
        self.state = state

    def __call__(self, invocation: Any) -> Forwarded:
        done = super().__call__(invocation)
        self.cloud.export_bucket(self.state.root)
        for run in done.runs:
            report = self.state.root / "runs"
            for folder in report.glob(f"*/{run.run_id}"):
                if (folder / "report.html").is_file():
                    run.detail["report"] = str(folder / "report.html")
        return done


def _listen_on_catalog(
    dsn: str, datasets: str, state: str | None, *, out: Callable[[str], None], **options: Any
) -> ListenResult:
    from dqad_dev.run import DEFAULT_STATE, StateDir, embedded
    from dqad_dev.validate import read_catalog

    catalog = read_catalog(datasets)
    names = ", ".join(catalog.require_valid().datasets)
    folder = StateDir(Path(state or DEFAULT_STATE))
    with embedded(folder, catalog_text=catalog.text()) as cloud:
        out(f"embedded runtime ready: datasets {names} from {datasets}, state in {folder.root}; connecting")
        return serve(dsn, SavingChain(cloud, folder), out=out, **options)


def cmd_listen(args: argparse.Namespace) -> int:
    from dqad_dev.errors import UserError

    dsn = args.dsn or os.environ.get(LISTEN_DSN_ENV)
    if not dsn:
        raise UserError(f"pass --dsn DSN or set ${LISTEN_DSN_ENV} (e.g. 'dbname=dqad_dev')")
    max_events = 1 if args.once else args.max_events
    try:
        result = listen_local(
            dsn,
            max_events=max_events,
            timeout=args.timeout,
            after_id=args.after_id,
            catch_up_s=args.catch_up,
            seed=args.seed,
            datasets=args.datasets,
            state=args.state,
        )
    except KeyboardInterrupt:
        print("stopped")
        return 0
    runs = [r for f in result.forwarded for r in f.runs]
    count = {s: sum(r.status == s for r in runs) for s in ("notified", "failed", "no-run")}
    print(
        f"forwarded {len(result.forwarded)} call(s), skipped {len(result.skipped)}; runs: "
        f"{count['notified']} notified, {count['failed']} failed, {count['no-run']} without new data"
    )
    if max_events is not None and len(result.forwarded) < max_events:
        print(f"timed out after {args.timeout or 0:g} s waiting for {max_events} call(s)")
        return 1
    return 1 if any(r.status == "failed" for r in runs) else 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "listen",
        help="bridge a local PostgreSQL's recorded aws_lambda.invoke calls to the fetcher (embedded runtime)",
        description=(
            "On Aurora the trigger's aws_lambda.invoke reaches the fetcher Lambda. Locally, sql/local's stand-in "
            "records each call in aws_lambda.invocations and sends a NOTIFY; this bridge forwards each call once to "
            "the fetcher on the embedded runtime and runs the chain to its end. With --datasets it runs your "
            "catalog's datasets (state kept as `dqad run` keeps it); without, the demo dataset ending now."
        ),
    )
    p.add_argument("--dsn", help=f"libpq DSN of the database with sql/local installed (or ${LISTEN_DSN_ENV})")
    p.add_argument("--once", action="store_true", help="exit after forwarding one call")
    p.add_argument("--max-events", type=int, metavar="N", help="exit after forwarding N calls")
    p.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds (default: run until interrupted)")
    p.add_argument("--after-id", type=int, metavar="N", help="first catch up on every call with a greater id")
    p.add_argument(
        "--catch-up", type=float, default=600, metavar="S", help="without --after-id, catch up on the last S seconds"
    )
    p.add_argument("--seed", type=int, default=7, help="seed of the demo dataset (without --datasets)")
    p.add_argument("--datasets", metavar="FILE", help="your dataset catalog, as for `dqad run` (default: the demo's)")
    p.add_argument("--state", metavar="DIR", help="state folder with --datasets (default: ./dqad-state)")
    p.set_defaults(func=cmd_listen)
