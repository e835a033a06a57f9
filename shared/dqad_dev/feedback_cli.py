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

from dqad.storage import Storage


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
    state = Path(args.state)
    if not state.is_dir():
        raise SystemExit(f"no local state at {state}: run `dqad demo` first, pass --state DIR, or use --aws")
    storage = FolderStorage(state)
    return storage, storage.uri("config/datasets.toml")


def cmd_feedback(args: argparse.Namespace) -> int:
    import pandas as pd

    from dqad.datasets import load_catalog
    from dqad.feedback import write_label

    storage, catalog_uri = _storage(args)
    if storage.exists(catalog_uri):  # a typo in the dataset name must not write labels nobody reads
        catalog = load_catalog(storage, catalog_uri)
        if args.dataset not in catalog.datasets:
            raise SystemExit(f"unknown dataset {args.dataset!r}; configured: {', '.join(sorted(catalog.datasets))}")
    try:
        ts = pd.Timestamp(args.timestamp)
    except ValueError:
        raise SystemExit(f"--timestamp {args.timestamp!r} is not a date/time (use e.g. 2026-11-02T02:16:07)") from None
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
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--series", required=True, help="series name as in the email/report, e.g. table/metric")
    p.add_argument("--timestamp", required=True, help="the point's load time (UTC), as in the email")
    p.add_argument("--label", required=True, choices=("normal", "anomaly"))
    p.add_argument("--note", default="", help="why (kept with the label)")
    p.add_argument("--by", default="", help="who (default: cli:<user>)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--aws", action="store_true", help="write to the deployed bucket (DQAD_* environment)")
    where.add_argument("--state", default="dqad-demo/state", help="local state folder written by `dqad demo`")
    p.set_defaults(func=cmd_feedback)
