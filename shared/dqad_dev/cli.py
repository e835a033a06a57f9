"""``dqad`` command line: demo, replay, backtest, feedback, listen.

Subcommands import what they need when they run, so ``dqad --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from dqad.topology import STAGE_FAILED, STAGE_NAMES, stage

# Modules that register their own subcommand with ``add_parser(subparsers)``.
PLUGIN_COMMANDS = ("dqad_dev.backtest", "dqad_dev.listen", "dqad_dev.feedback_cli")


def cmd_demo(args: argparse.Namespace) -> int:
    from dqad_dev.demo import print_result, run_demo

    result = run_demo(Path(args.out), seed=args.seed)
    print_result(result)
    missed = result.injected[~result.injected["found"]]
    return 1 if len(missed) else 0


def input_event_key(storage, run_id: str, stage_name: str) -> str:  # type: ignore[no-untyped-def]
    """The stored event a stage consumed for this run (for the notifier: its StageFailed if any)."""
    st = stage(stage_name)
    stored = {u.rsplit("/", 1)[-1]: u for u in storage.list_uris(storage.uri(f"events/{run_id}/"))}
    for detail_type in st.consumes:
        if detail_type == STAGE_FAILED:
            continue
        if f"{detail_type}.json" in stored:
            return stored[f"{detail_type}.json"]
    failures = sorted(u for name, u in stored.items() if name.startswith(f"{STAGE_FAILED}-"))
    if STAGE_FAILED in st.consumes and failures:
        return failures[0]
    raise SystemExit(
        f"no stored input event for stage {stage_name!r} in run {run_id} "
        f"(found: {', '.join(sorted(stored)) or 'nothing'}); wanted one of {', '.join(st.consumes)}"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run one stage from its stored input event: on AWS (--aws) or on the demo's saved state."""
    from dqad.storage import Storage

    if args.aws:
        import boto3

        from dqad.settings import Settings
        from dqad.topology import Names

        settings = Settings.from_env()
        storage = Storage(boto3.client("s3"), settings.bucket)
        uri = input_event_key(storage, args.run_id, args.stage)
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=Names(args.prefix).queue(args.stage))["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(storage.get_json(uri)))
        print(f"sent {uri} to {url}")
        return 0

    from dqad_dev.demo import DEMO_PREFIX
    from dqad_dev.local import LocalCloud

    state = Path(args.state)
    if not state.is_dir():
        raise SystemExit(f"no local state at {state}: run `dqad demo` first or pass --state")
    with LocalCloud(DEMO_PREFIX) as cloud:
        cloud.import_bucket(state)
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        uri = input_event_key(storage, args.run_id, args.stage)
        cloud.client("sqs").send_message(
            QueueUrl=cloud.dep.queue_urls[args.stage], MessageBody=json.dumps(storage.get_json(uri))
        )
        only = None if args.follow else (args.stage,)
        report = cloud.pump(only=only)
        print(f"replayed {args.stage} for run {args.run_id} from {uri.split('/', 3)[-1]}")
        # A record that failed for good is acknowledged and parked in the DLQ, so it never shows in
        # the retry count: the summary counts both, or a dead-lettered run reads "0 failed".
        parked = {name: cloud.dead_letters(name) for name in STAGE_NAMES}
        for name, seconds in report.seconds.items():
            retried, dead = report.failures.get(name, 0), len(parked[name])
            print(f"  {name:<9} {seconds:6.2f} s, {retried + dead} failed record(s) ({dead} dead-lettered)")
        for dlq_stage, messages in parked.items():
            for msg in messages:
                reason = msg.get("MessageAttributes", {}).get("error", {}).get("StringValue", "")
                print(f"  DLQ {dlq_stage}: {reason}")
        cloud.export_bucket(state)
    dead_total = sum(len(m) for m in parked.values())
    if dead_total:
        print(f"replay FAILED: {dead_total} record(s) in the DLQ (reasons above); fix the cause and replay again")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dqad", description="Data-quality anomaly detection pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole chain on moto with bundled sample data")
    demo.add_argument("--out", default="dqad-demo", help="folder for the run's outputs (default ./dqad-demo)")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser("replay", help="re-run one stage of a run from its stored input event")
    replay.add_argument("--run-id", required=True)
    replay.add_argument("--stage", required=True, choices=STAGE_NAMES)
    replay.add_argument("--aws", action="store_true", help="send to the deployed stage's queue (env settings)")
    replay.add_argument("--prefix", default="dqad-dev", help="resource name prefix of the deployment (--aws)")
    replay.add_argument("--state", default="dqad-demo/state", help="local state folder written by `dqad demo`")
    replay.add_argument("--follow", action="store_true", help="locally, let the chain continue downstream")
    replay.set_defaults(func=cmd_replay)

    for module in PLUGIN_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
