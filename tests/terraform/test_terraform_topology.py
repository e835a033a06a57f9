"""Terraform builds exactly the topology the local runtime provisions (dqad.topology).

Why: the local runtime (moto) and AWS must be one shape, so what passes here works there. Terraform
reads the topology through terraform/topology.json (generated); these tests check that the file is
current, that every stage is deployed by a root wired to it, and that the module turns it into the
same names, patterns, queues, DLQs and redrive counts.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dqad import topology as t

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
SERVICE_MODULE = TF / "modules" / "service"
PREFIX = "acme-data-AnomalyDetection-test"
# Not in dqad.topology (yet): the notifier root deploys it behind a function URL.
FEEDBACK_ENTRY = "dqad_notifier.handler:feedback_handler"


def _generator():
    spec = importlib.util.spec_from_file_location("dqad_tf_gen_topology", TF / "gen_topology.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def topo_json() -> dict:
    return json.loads((TF / "topology.json").read_text())


@pytest.fixture(scope="module")
def service_module(tfkit) -> dict:
    return tfkit.load_dir(SERVICE_MODULE)


def test_topology_json_is_current() -> None:
    assert (TF / "topology.json").read_text() == _generator().render(), (
        "terraform/topology.json is stale: run `.venv/bin/python terraform/gen_topology.py`"
    )


@pytest.mark.parametrize("stage", t.STAGE_NAMES)
def test_every_stage_has_a_root_wired_to_the_topology(tfkit, stage: str) -> None:
    root = tfkit.load_dir(TF / "services" / stage)
    assert tfkit.unquote(tfkit.locals_of(root)["stage_name"]) == stage
    module = tfkit.named(root, "module")["service"]
    assert tfkit.unquote(module["source"]) == "../../modules/service"
    assert module["stage"] == "${local.stage_name}"
    assert module["handler"] == "${local.stage.handler}"
    assert module["rules"] == "${local.stage.rules}"
    assert module["max_receive_count"] == "${local.topology.max_receive_count}"
    assert module["visibility_timeout_s"] == "${local.topology.visibility_timeout_s}"
    assert module["policy_json"] == "${data.aws_iam_policy_document.stage.json}"
    common = tfkit.locals_of(root)
    assert "topology.json" in common["topology"] and "jsondecode" in common["topology"]
    assert common["stage"] == "${local.topology.stages[local.stage_name]}"


@pytest.mark.parametrize("stage", t.STAGES, ids=lambda s: s.name)
def test_exported_stage_matches_topology(topo_json: dict, stage: t.Stage) -> None:
    exported = topo_json["stages"][stage.name]
    assert exported["handler"] == stage.handler.replace(":", ".")
    assert len(exported["rules"]) == len(stage.rules)
    for rule, out in zip(stage.rules, exported["rules"], strict=True):
        assert json.loads(out["pattern"]) == rule.pattern  # compared as JSON, not as text
        assert out["suffix"] == rule.suffix
        assert out["on_default_bus"] == rule.on_default_bus
    assert topo_json["max_receive_count"] == t.MAX_RECEIVE_COUNT
    assert topo_json["visibility_timeout_s"] == t.VISIBILITY_TIMEOUT_S


@pytest.mark.parametrize("detail_type", sorted({d for s in t.STAGES for d in s.consumes}))
def test_every_consumed_event_type_has_a_rule_queue_and_dlq(tfkit, topo_json, detail_type: str) -> None:
    consumer = t.consumer_of(detail_type)
    rules = topo_json["stages"][consumer.name]["rules"]
    matching = [r for r in rules if detail_type in json.loads(r["pattern"])["detail-type"]]
    assert matching, f"no rule routes {detail_type} to {consumer.name}"
    # ...and that stage's root instantiates the module, which builds rule -> queue (+ DLQ) per rule.
    assert "service" in tfkit.named(tfkit.load_dir(TF / "services" / consumer.name), "module")


def test_module_derives_names_like_the_topology(tfkit, service_module: dict) -> None:
    names = t.Names(PREFIX)
    loc = tfkit.locals_of(service_module)
    for stage in t.STAGE_NAMES:
        values = {"var.name_prefix": PREFIX, "var.stage": stage}
        assert tfkit.render(loc["queue_name"], values) == names.queue(stage)
        assert tfkit.render(loc["dlq_name"], values) == names.dlq(stage)
        assert tfkit.render(loc["function_name"], values) == names.function(stage)
        for entry in t.stage(stage).extra_entry_points:
            extra = loc["extra_function_names"].replace("${{for k, f in var.extra_functions : k => ", "")
            extra = extra.rstrip("}")
            assert tfkit.render(extra, {**values, "k": entry}) == names.function(stage, entry)
        rule = tfkit.resource(service_module, "aws_cloudwatch_event_rule", "rule")
        for r in t.stage(stage).rules:
            assert tfkit.render(rule["name"], {**values, "each.value.suffix": r.suffix}) == names.rule(stage, r)


def test_module_builds_rule_to_queue_with_retries_and_dlq(tfkit, service_module: dict) -> None:
    rule = tfkit.resource(service_module, "aws_cloudwatch_event_rule", "rule")
    assert rule["for_each"] == "${local.rules}"
    assert rule["event_pattern"] == "${each.value.pattern}"
    assert rule["event_bus_name"] == '${each.value.on_default_bus ? "default" : var.bus_name}'
    target = tfkit.resource(service_module, "aws_cloudwatch_event_target", "queue")
    assert target["for_each"] == "${local.rules}"
    assert target["arn"] == "${aws_sqs_queue.queue.arn}"
    assert tfkit.block(target, "dead_letter_config")["arn"] == "${aws_sqs_queue.dlq.arn}"
    retry = tfkit.block(target, "retry_policy")
    assert retry["maximum_retry_attempts"] > 0 and retry["maximum_event_age_in_seconds"] > 0
    assert "var.rules" in tfkit.locals_of(service_module)["rules"]


def test_queue_redrives_to_dlq_after_topology_receive_count(tfkit, service_module: dict) -> None:
    queue = tfkit.resource(service_module, "aws_sqs_queue", "queue")
    assert queue["name"] == "${local.queue_name}"
    assert "deadLetterTargetArn = aws_sqs_queue.dlq.arn" in queue["redrive_policy"]
    assert "maxReceiveCount = var.max_receive_count" in queue["redrive_policy"]
    assert queue["visibility_timeout_seconds"] == "${var.visibility_timeout_s}"
    dlq = tfkit.resource(service_module, "aws_sqs_queue", "dlq")
    assert dlq["name"] == "${local.dlq_name}"
    for q in (queue, dlq):
        assert q["kms_master_key_id"] == "${var.kms_key_arn}"  # SSE with the deployment key


def test_event_source_reports_partial_failures_with_bounded_concurrency(tfkit, service_module: dict) -> None:
    esm = tfkit.resource(service_module, "aws_lambda_event_source_mapping", "queue")
    assert esm["event_source_arn"] == "${aws_sqs_queue.queue.arn}"
    assert tfkit.unquote(esm["function_response_types"]) == ["ReportBatchItemFailures"]
    assert tfkit.block(esm, "scaling_config")["maximum_concurrency"] == "${var.maximum_concurrency}"


def test_alarms_on_dlq_depth_and_errors(tfkit, service_module: dict) -> None:
    dlq_alarm = tfkit.resource(service_module, "aws_cloudwatch_metric_alarm", "dlq_depth")
    assert dlq_alarm["dimensions"] == {"QueueName": "${aws_sqs_queue.dlq.name}"}
    errors = tfkit.resource(service_module, "aws_cloudwatch_metric_alarm", "errors")
    assert errors["for_each"] == "${local.all_function_names}"
    assert tfkit.unquote(errors["metric_name"]) == "Errors"


def test_extra_entry_points_are_deployed(tfkit) -> None:
    for stage in t.STAGES:
        module = tfkit.named(tfkit.load_dir(TF / "services" / stage.name), "module")["service"]
        extras = module.get("extra_functions", {})
        for entry in stage.extra_entry_points:
            assert entry in extras, f"{stage.name}: entry point {entry} has no function"
            assert extras[entry]["handler"] == f"${{local.stage.extra_handlers.{entry}}}"


def test_shared_names_follow_the_topology(tfkit) -> None:
    names = t.Names(PREFIX)
    loc = tfkit.locals_of(tfkit.load_dir(TF / "modules" / "shared"))["names"]
    values = {"var.name_prefix": PREFIX}
    assert tfkit.render(loc["bus"], values) == names.bus
    assert tfkit.render(loc["archive"], values) == names.archive
    assert tfkit.render(loc["alerts_topic"], values) == names.alerts_topic
    assert tfkit.render(loc["operator_topic"], values) == names.operator_topic
    assert tfkit.render(loc["idempotency_table"], values) == names.idempotency_table
    assert tfkit.render(loc["shards_table"], values) == names.shards_table


def test_trainer_rule_follows_sagemaker_job_prefix(topo_json: dict) -> None:
    rules = topo_json["stages"]["trainer"]["rules"]
    sm = [json.loads(r["pattern"]) for r in rules if r["on_default_bus"]]
    assert sm and sm[0]["detail"]["ProcessingJobName"] == [{"prefix": t.SAGEMAKER_JOB_PREFIX}]
    assert topo_json["sagemaker_job_prefix"] == t.SAGEMAKER_JOB_PREFIX


@pytest.mark.parametrize("stage", t.STAGES, ids=lambda s: s.name)
def test_handlers_named_in_terraform_exist(stage: t.Stage) -> None:
    """Every handler Terraform deploys is a function of the service's handler module."""
    import ast

    entries = [stage.handler, *stage.extra_entry_points.values()]
    if stage.name == "notifier":
        entries.append("dqad_notifier.handler:feedback_handler")  # notifier root: feedback function URL
    for entry in entries:
        module, _, function = entry.partition(":")
        path = REPO / "services" / stage.name / (module.replace(".", "/") + ".py")
        assert path.exists(), f"{entry}: {path} missing"
        defined = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        defined |= {
            tgt.id
            for n in ast.parse(path.read_text()).body
            if isinstance(n, ast.Assign)
            for tgt in n.targets
            if isinstance(tgt, ast.Name)
        }
        if function not in defined and entry == FEEDBACK_ENTRY:
            pytest.xfail(f"{FEEDBACK_ENTRY} is deployed by terraform/services/notifier but not written yet")
        assert function in defined, f"{entry}: {function} not defined in {path.relative_to(REPO)}"
