"""``dqad`` command line: demo, run, validate, serve, replay, backtest, feedback, listen.

Subcommands import what they need when they run, so ``dqad --help`` stays instant. Every command
runs under :func:`dqad_dev.errors.run_command`: a mistake the user can fix is one line and exit
code 2, a traceback only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dqad.topology import STAGE_FAILED, STAGE_NAMES, stage

if TYPE_CHECKING:
    from dqad.storage import Storage
    from dqad_dev.local import LocalCloud, PumpReport

# Modules that register their own subcommand with ``add_parser(subparsers)``.
PLUGIN_COMMANDS = (
    "dqad_dev.run",
    "dqad_dev.validate",
    "dqad_dev.serve",
    "dqad_dev.backtest",
    "dqad_dev.listen",
    "dqad_dev.feedback_cli",
)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none worth saying (None, off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS, "") and not isinstance(action, argparse._VersionAction)
        if shown and action.option_strings and "default" not in text and not action.required:
            text += " (default: %(default)s)"
        return text


def cmd_demo(args: argparse.Namespace) -> int:
    from dqad_dev.demo import print_result, run_demo

    result = run_demo(Path(args.out), seed=args.seed)
    print_result(result)
    missed = result.injected[~result.injected["found"]]
    return 1 if len(missed) else 0


def input_event_key(storage: Storage, run_id: str, stage_name: str) -> str:
    """The stored event a stage consumed for this run (for the notifier: its StageFailed if any)."""
    return input_event_keys(storage, run_id, stage_name)[0]


def input_event_keys(storage: Storage, run_id: str, stage_name: str, shard: int | None = None) -> list[str]:
    """The stored event(s) a stage consumed for this run: one, or one per shard of a sharded run
    (docs/architecture.md §12); with ``shard``, that shard's only."""
    from dqad.bus import event_key
    from dqad_dev.errors import UserError

    st = stage(stage_name)
    stored = {u.rsplit("/", 1)[-1]: u for u in storage.list_uris(storage.uri(f"events/{run_id}/"))}
    if not stored:
        raise UserError(f"no run {run_id!r} in this state (no stored events): check the run id `dqad run` printed")
    wanted = [t for t in st.consumes if t != STAGE_FAILED]
    for detail_type in wanted:
        if shard is not None:
            name = event_key(run_id, detail_type, shard=shard).rsplit("/", 1)[-1]
            if name in stored:
                return [stored[name]]
            continue
        if f"{detail_type}.json" in stored:
            return [stored[f"{detail_type}.json"]]
        shards = sorted(u for name, u in stored.items() if name.startswith(f"{detail_type}-shard"))
        if shards:
            return shards
    if shard is not None:
        raise UserError(
            f"no stored input event for shard {shard} of stage {stage_name!r} in run {run_id} "
            f"(found: {', '.join(sorted(stored))})"
        )
    failures = sorted(u for name, u in stored.items() if name.startswith(f"{STAGE_FAILED}-"))
    if STAGE_FAILED in st.consumes and failures:
        return failures[:1]
    raise UserError(
        f"no stored input event for stage {stage_name!r} in run {run_id} "
        f"(found: {', '.join(sorted(stored))}); wanted one of {', '.join(st.consumes)}"
    )


def reopen_shards(dynamodb: object, table: str, stage_name: str, events: list[dict]) -> None:
    """Before shards are re-sent, take them out of their join (dqad.shard_join), so that their
    completion joins again: the replayed stage then emits its next event once more."""
    from dqad.contract import parse_event
    from dqad.shard_join import item_id

    for event in events:
        detail = parse_event(event)
        shard = getattr(detail, "shard", None)
        if shard is None or not table:
            continue
        dynamodb.update_item(  # type: ignore[attr-defined]
            TableName=table,
            Key={"id": {"S": item_id(detail.run_id, stage_name, shard.join)}},
            UpdateExpression="DELETE #done :index REMOVE #emitted, #claimed",
            ExpressionAttributeNames={"#done": "done", "#emitted": "emitted_at", "#claimed": "claimed_until"},
            ExpressionAttributeValues={":index": {"NS": [str(shard.index)]}},
        )


def replay_in(
    cloud: LocalCloud, storage: Storage, run_id: str, stage_name: str, shard: int | None = None, *, follow: bool = False
) -> tuple[list[str], PumpReport]:
    """Re-send a stage's stored input event(s) of a run on the embedded runtime and pump: that stage
    only, or with ``follow`` the chain downstream too. Returns the events' URIs and the pump report."""
    from dqad_dev.run import drive_chain

    uris = input_event_keys(storage, run_id, stage_name, shard)
    events = [storage.get_json(uri) for uri in uris]
    reopen_shards(cloud.client("dynamodb"), cloud.dep.names.shards_table, stage_name, events)
    for event in events:
        cloud.client("sqs").send_message(QueueUrl=cloud.dep.queue_urls[stage_name], MessageBody=json.dumps(event))
    report = drive_chain(cloud) if follow else cloud.pump(only=(stage_name,))
    return uris, report


def cmd_replay(args: argparse.Namespace) -> int:
    """Re-run one stage from its stored input event: on AWS (--aws) or on a local state folder."""
    from dqad.storage import Storage

    if args.aws:
        import boto3

        from dqad.settings import Settings
        from dqad.topology import Names

        settings = Settings.from_env()
        storage = Storage(boto3.client("s3"), settings.bucket)
        uris = input_event_keys(storage, args.run_id, args.stage, args.shard)
        events = [storage.get_json(uri) for uri in uris]
        reopen_shards(
            boto3.client("dynamodb"), settings.shards_table or Names(args.prefix).shards_table, args.stage, events
        )
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=Names(args.prefix).queue(args.stage))["QueueUrl"]
        for uri, event in zip(uris, events, strict=True):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
            print(f"sent {uri} to {url}")
        return 0

    from dqad_dev.errors import UserError
    from dqad_dev.run import DEFAULT_PORT, collect, embedded, inbox_by_run, resolve_state, save_outputs

    state = resolve_state(args.state)
    if not state.root.is_dir():
        raise UserError(f"no local state at {state.root}: run `dqad run` or `dqad demo` first, or pass --state DIR")
    links = DEFAULT_PORT if (state.local / "feedback-secret").is_file() else None  # a `dqad run` state
    with embedded(state, port=links) as cloud:
        storage = Storage(cloud.client("s3"), cloud.dep.bucket)
        uris, report = replay_in(cloud, storage, args.run_id, args.stage, args.shard, follow=args.follow)
        event = storage.get_json(uris[0])
        sources = ", ".join(uri.split("/", 3)[-1] for uri in uris)
        print(f"replayed {args.stage} for run {args.run_id} from {sources}")
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
        result = collect(storage, event["detail"]["dataset"], args.run_id)
        result.messages = inbox_by_run(cloud).get(args.run_id, [])
    save_outputs(state, result)
    if result.anomalies is not None:
        n = len(result.anomalies)
        print(f"  {n} {'anomaly' if n == 1 else 'anomalies'} in the run's scores")
    if result.failure:
        print(f"  the run {result.failure}")
    for name, path in result.outputs.items():
        print(f"  {name:<8} {path}")
    if not result.messages and args.stage == "notifier":
        print("  no new message (what this run found was already alerted)")
    dead_total = sum(len(m) for m in parked.values())
    if dead_total:
        print(f"replay FAILED: {dead_total} record(s) in the DLQ (reasons above); fix the cause and replay again")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="dqad", description="Data-quality anomaly detection pipeline", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"dqad {version('dqad')}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not just its line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the whole chain on moto with bundled sample data",
        description="Generate 180 days of metrics for 20 tables, inject three incidents on the latest load and "
        "run the whole chain on the embedded runtime: prints the anomalies and the path of the report.",
    )
    demo.add_argument("--out", default="dqad-demo", metavar="DIR", help="folder for the run's outputs (replaced)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the generated sample data")
    demo.set_defaults(func=cmd_demo)

    replay = sub.add_parser(
        "replay",
        help="re-run one stage of a run from its stored input event",
        description="Re-run one stage of a run from the event it consumed: locally on a state folder "
        "(`dqad run`'s or `dqad demo`'s), or on AWS by sending the stored event to the stage's queue.",
    )
    replay.add_argument("--run-id", required=True, help="the run, as printed by `dqad run` or named in an alert")
    replay.add_argument("--stage", required=True, choices=STAGE_NAMES, help="the stage to re-run")
    replay.add_argument("--aws", action="store_true", help="send to the deployed stage's queue (DQAD_* environment)")
    replay.add_argument("--prefix", default="dqad-dev", help="resource name prefix of the deployment (with --aws)")
    replay.add_argument(
        "--state",
        metavar="DIR",
        help="local state folder (default: ./dqad-state if it exists, else ./dqad-demo/state)",
    )
    replay.add_argument("--follow", action="store_true", help="locally, let the chain continue downstream")
    replay.add_argument(
        "--shard",
        type=int,
        metavar="N",
        help="a sharded run: re-run only shard N (as named by the run's StageFailed); default: every shard",
    )
    replay.set_defaults(func=cmd_replay)

    for module in PLUGIN_COMMANDS:
        importlib.import_module(module).add_parser(sub)
    summaries = {a.dest: a.help for a in sub._choices_actions}
    for name, command in sub.choices.items():
        command.formatter_class = HelpFormatter
        command.description = command.description or summaries.get(name)
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The ``dqad`` command. From a shell (``argv`` None) the stages' JSON logs are kept to warnings
    (``--debug``: everything), so the output is the command's; a test calling ``main([...])`` keeps
    its process's logging as it is, because Powertools loggers fix their level when first created."""
    import os

    from dqad_dev.errors import run_command

    args = build_parser().parse_args(argv)
    if argv is None:
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "DEBUG" if args.debug else "WARNING")
    return run_command(lambda: args.func(args), args.command, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
