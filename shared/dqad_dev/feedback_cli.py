"""``dqad feedback``: tell dqad that a point is (not) an anomaly, from the command line.

    dqad feedback --dataset demo_dq --series sales.order_lines/row_count \\
        --timestamp 2026-11-02T02:16:07 --label normal --note "planned purge"

The label goes to ``labels/<dataset>/`` (:func:`dqad.feedback.write_label`), where the next labeler
run reads it: human feedback overrides every automatic rule. It is written to the deployed bucket
with ``--aws`` (settings from the ``DQAD_*`` environment, as on a Lambda), or by default to the
local state folder that ``dqad demo`` leaves behind (a mirror of the bucket), so
``dqad replay --stage labeler`` on that folder picks it up.

It is the same action as the links in the alert email, for people who prefer a terminal, for
bulk corrections, and for deployments where the feedback URL is not set up.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from dqad.storage import Storage
from dqad_dev.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd


class FolderStorage(Storage):
    """A folder laid out like the bucket (``dqad demo``'s ``state/``): keys become paths under it."""

    def __init__(self, root: Path) -> None:
        super().__init__(None, "")
        self.root = root.resolve()

    def uri(self, key: str) -> str:
        return f"file://{self.root / key}"


def _storage(args: argparse.Namespace) -> tuple[Storage, str]:
    """The storage to write to, and the URI of the dataset catalog there."""
    if args.aws:
        import boto3

        from dqad.settings import Settings

        settings = Settings.from_env()
        return Storage(boto3.client("s3"), settings.bucket), settings.datasets_uri
    from dqad_dev.run import resolve_state

    state = resolve_state(args.state).root
    if not state.is_dir():
        raise UserError(f"no local state at {state}: run `dqad run` first, pass --state DIR, or use --aws")
    storage = FolderStorage(state)
    return storage, storage.uri("config/datasets.toml")


def known_points(storage: Storage, dataset: str) -> pd.DataFrame:
    """Every (series, timestamp) the dataset's runs fetched: the newest run's history and each run's new load."""
    import pandas as pd

    runs = sorted({u.split(f"runs/{dataset}/", 1)[1].split("/", 1)[0]
                   for u in storage.list_uris(storage.uri(f"runs/{dataset}/"))})
    frames = []
    for i, run in enumerate(runs):
        names = ("history", "new") if i == len(runs) - 1 else ("new",)
        for name in names:
            uri = storage.uri(f"runs/{dataset}/{run}/{name}.parquet")
            if storage.exists(uri):
                frames.append(storage.read_parquet(uri, columns=["series", "timestamp"]))
    if not frames:
        return pd.DataFrame({"series": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns]")})
    return pd.concat(frames, ignore_index=True).drop_duplicates()


def checked_point(points: pd.DataFrame, dataset: str, series: str, ts: pd.Timestamp) -> pd.Timestamp:
    """The point the label is for: ``series`` must exist, ``ts`` be one of its loads (or the only one
    in that minute, as the email and the report show minutes). A typo would record a label nobody reads."""
    import pandas as pd

    if points.empty:
        raise UserError(
            f"no run of dataset {dataset!r} here yet, so no point to label: run `dqad run` first (or pass --force)"
        )
    if series not in set(points["series"]):
        raise UserError(f"unknown series {series!r} in {dataset}{did_you_mean(series, points['series'], what='known')}")
    stamps = pd.DatetimeIndex(points.loc[points["series"] == series, "timestamp"]).sort_values()
    if ts in stamps:
        return ts
    same_minute = stamps[stamps.floor("min") == ts.floor("min")]
    if len(same_minute) == 1:
        return pd.Timestamp(same_minute[0])
    nearest = stamps[(stamps - ts).to_series().abs().to_numpy().argsort()[:3]]
    shown = ", ".join(t.isoformat() for t in sorted(nearest))
    raise UserError(f"series {series!r} has no load at {ts.isoformat()} (nearest: {shown}); copy it from the email")


def cmd_feedback(args: argparse.Namespace) -> int:
    import pandas as pd

    from dqad.datasets import load_catalog
    from dqad.feedback import write_label

    storage, catalog_uri = _storage(args)
    if storage.exists(catalog_uri):  # a typo in the dataset name must not write labels nobody reads
        catalog = load_catalog(storage, catalog_uri)
        if args.dataset not in catalog.datasets:
            raise UserError(f"unknown dataset {args.dataset!r}{did_you_mean(args.dataset, catalog.datasets)}")
    try:
        ts = pd.Timestamp(args.timestamp)
    except ValueError:
        ts = None
    if ts is None or pd.isna(ts):
        raise UserError(f"--timestamp {args.timestamp!r} is not a date/time (use e.g. 2026-11-02T02:16:07)")
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    if not args.force:
        given = ts
        ts = checked_point(known_points(storage, args.dataset), args.dataset, args.series, ts)
        if ts != given:
            print(f"using the load of {args.series} at {ts.isoformat()} (the only one in that minute)")
    uri = write_label(storage, args.dataset, args.series, ts, args.label, note=args.note or "", by=args.by or _whoami())
    print(f"recorded {args.series} at {ts.isoformat()} as {args.label} in {uri}")
    print("the next labeler run of the dataset uses it (human feedback overrides every automatic rule)")
    return 0


def _whoami() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in some containers
        return "cli"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "feedback",
        help="label a point as normal or anomaly (overrides the automatic labels on the next run)",
        description="Record that a point is expected (normal) or a real incident (anomaly); the next run of the "
        "dataset learns from it. The series and time must be a point a run fetched (as in the email or report).",
    )
    p.add_argument("--dataset", required=True, help="the dataset, as named in the catalog")
    p.add_argument("--series", required=True, help="series name as in the email/report, e.g. table/metric")
    p.add_argument("--timestamp", required=True, help="the point's load time (UTC), as in the email")
    p.add_argument("--label", required=True, choices=("normal", "anomaly"), help="normal: expected; anomaly: incident")
    p.add_argument("--note", default="", help="why (kept with the label)")
    p.add_argument("--by", default="", help="who (default: cli:<user>)")
    p.add_argument("--force", action="store_true", help="record even if no run fetched that series and time")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--aws", action="store_true", help="write to the deployed bucket (DQAD_* environment)")
    where.add_argument(
        "--state", metavar="DIR", help="local state folder (default: ./dqad-state if it exists, else ./dqad-demo/state)"
    )
    p.set_defaults(func=cmd_feedback)
