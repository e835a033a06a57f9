"""Each stage's role grants exactly what its code calls, on scoped resources.

Why: least privilege that is checked, not promised. The scanner (tfkit) reads the code; the list in
terraform/iam_actions.json says why each action is held; the policy documents in Terraform are what
is granted. Three inclusions tie them: scanned ⊆ listed, listed ⊆ granted, granted ⊆ listed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from dqad.topology import STAGE_NAMES

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
# Actions that AWS does not let you scope to a resource: "*" is the only valid resource.
UNSCOPABLE = {
    "xray:PutTraceSegments", "xray:PutTelemetryRecords", "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets", "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData",
    "redshift-data:DescribeStatement", "redshift-data:GetStatementResult", "redshift-data:CancelStatement",
}  # fmt: skip


def granted(tfkit, stage: str) -> dict[str, list[str]]:
    """Action -> statements granting it, over the module's base policy and the root's stage policy."""
    module_docs = tfkit.policy_documents(tfkit.load_dir(TF / "modules" / "service"), "modules/service")
    root_docs = tfkit.policy_documents(tfkit.load_dir(TF / "services" / stage), f"services/{stage}")
    out: dict[str, list[str]] = {}
    for st in module_docs["base"] + root_docs["stage"]:
        if st.effect == "Allow":
            for action in st.actions:
                out.setdefault(action, []).append(st.where)
    return out


def listed(tfkit, stage: str, kind: str) -> dict[str, str]:
    declared = tfkit.iam_declared()
    return {**declared["common"][kind], **declared["stages"][stage][kind]}


def test_every_stage_has_a_list(tfkit) -> None:
    assert set(tfkit.iam_declared()["stages"]) == set(STAGE_NAMES)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_scan_follows_the_code(tfkit, stage: str) -> None:
    scan = tfkit.scan_stage(stage)
    assert not scan.unresolved, "calls the scanner cannot follow; make them scannable:\n" + "\n".join(scan.unresolved)
    # Every stage publishes, stores and dead-letters through dqad: if these vanish, the scan is blind.
    assert {"events:PutEvents", "s3:PutObject", "sqs:SendMessage"} <= set(scan.actions), scan.actions


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_what_the_code_calls_is_listed(tfkit, stage: str) -> None:
    scan = tfkit.scan_stage(stage)
    code = listed(tfkit, stage, "code")
    missing = {a: w for a, w in scan.actions.items() if a not in code}
    assert not missing, f"add to terraform/iam_actions.json[{stage}].code (with why) and grant: {missing}"
    unseen = sorted(set(code) - set(scan.actions))
    if unseen:
        warnings.warn(f"{stage}: listed but not (yet) seen in the code: {unseen}", stacklevel=1)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_what_is_listed_is_granted(tfkit, stage: str) -> None:
    have = granted(tfkit, stage)
    missing = sorted(set(listed(tfkit, stage, "code")) - set(have))
    assert not missing, f"{stage}'s role lacks {missing}"
    assert set(tfkit.scan_stage(stage).actions) <= set(have)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_what_is_granted_is_justified(tfkit, stage: str) -> None:
    justified = listed(tfkit, stage, "code") | listed(tfkit, stage, "platform")
    extra = {a: w for a, w in granted(tfkit, stage).items() if a not in justified}
    assert not extra, f"granted without a reason in terraform/iam_actions.json: {extra}"


def test_every_reason_is_written(tfkit) -> None:
    declared = tfkit.iam_declared()
    sections = [declared["common"], *declared["stages"].values()]
    empty = [a for s in sections for kind in ("code", "platform") for a, why in s[kind].items() if len(why) < 10]
    assert not empty


def _all_statements(tfkit):
    for path in sorted({p.parent for p in TF.rglob("*.tf")}):
        yield from (
            (name, st)
            for name, sts in tfkit.policy_documents(tfkit.load_dir(path), str(path.relative_to(TF))).items()
            for st in sts
        )


def test_no_wildcard_actions(tfkit) -> None:
    """No Allow with "service:*"/"*", except the KMS key policy's account-root statement (AWS default)."""
    bad = [
        f"{st.where}: {a}"
        for name, st in _all_statements(tfkit)
        if st.effect == "Allow" and name != "kms"
        for a in st.actions
        if a == "*" or a.endswith(":*")
    ]
    assert not bad


def test_no_wildcard_resources_where_aws_can_scope(tfkit) -> None:
    """"*" only for actions without a resource type; key policies are exempt ("*" = this key)."""
    bad = [
        f"{st.where}: {st.actions}"
        for name, st in _all_statements(tfkit)
        if st.effect == "Allow" and name not in {"kms"} and "*" in st.resources
        and not set(st.actions) <= UNSCOPABLE
    ]  # fmt: skip
    assert not bad


def test_redshift_statement_reads_are_bounded_to_own_statements(tfkit) -> None:
    docs = tfkit.policy_documents(tfkit.load_dir(TF / "services" / "fetcher"), "fetcher")
    body = next(
        b for t, n, b in tfkit.labelled(tfkit.load_dir(TF / "services" / "fetcher"), "data") if n == "stage"
    )
    own = next(s for s in body["statement"] if tfkit.unquote(s.get("sid")) == "ReadOwnStatements")
    assert tfkit.unquote(tfkit.block(own, "condition")["variable"]) == "redshift-data:statement-owner-iam-userid"
    assert any("redshift-data:ExecuteStatement" in s.actions for s in docs["stage"])


# --- the scanner itself ---------------------------------------------------------------------------
SAMPLE = '''
import boto3
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

class Store:
    def __init__(self, s3_client, bucket):
        self.s3 = s3_client
        self.bucket = bucket

    def put(self, key):
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=b"")
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            pass

def _sm():
    return boto3.client("sagemaker")

def start(clients):
    store = Store(clients("s3"), "b")
    _sm().create_processing_job(ProcessingJobName="x")
    poll(clients("redshift-data"))
    DynamoDBPersistenceLayer(table_name="t", boto3_client=clients("dynamodb"))
    clients("s3").exceptions.ClientError

def poll(client):
    client.describe_statement(Id="1")
'''


def test_scanner_follows_clients_through_attributes_params_and_returns(tfkit, tmp_path: Path) -> None:
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE)
    scan = tfkit.scan_files([path])
    assert set(scan.actions) == {
        "s3:PutObject", "s3:ListBucket", "sagemaker:CreateProcessingJob", "redshift-data:DescribeStatement",
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    }  # fmt: skip
    assert not scan.unresolved


def test_action_names_come_from_botocore(tfkit) -> None:
    assert tfkit.to_action("s3", "list_objects_v2") == ["s3:ListBucket"]
    assert tfkit.to_action("s3", "head_object") == ["s3:GetObject"]
    assert tfkit.to_action("redshift-data", "execute_statement") == ["redshift-data:ExecuteStatement"]
    assert tfkit.to_action("events", "put_events") == ["events:PutEvents"]
    assert tfkit.to_action("s3", "not_an_operation") == []


# --- grants the deployed chain needs and that a moto run cannot show (docs/architecture.md §8) -----
def _stage_statements(tfkit, stage: str, doc: str = "stage") -> dict[str, tuple[list[str], list[str]]]:
    docs = tfkit.policy_documents(tfkit.load_dir(TF / "services" / stage), stage)
    return {st.where.rsplit(":", 1)[1]: (st.actions, st.resources) for st in docs[doc]}


def test_notifier_reads_and_writes_its_alert_state(tfkit) -> None:
    actions, resources = _stage_statements(tfkit, "notifier")["AlertState"]
    assert {"s3:GetObject", "s3:PutObject"} <= set(actions)
    assert resources == ["${local.bucket_arn}/alerts/*"]


def test_fetcher_reads_and_writes_its_freshness_state_and_its_schedule_may_only_invoke_the_check(tfkit) -> None:
    actions, resources = _stage_statements(tfkit, "fetcher")["FreshnessState"]
    assert set(actions) == {"s3:GetObject", "s3:PutObject"}
    assert resources == ["${local.bucket_arn}/freshness/*"]
    schedule = _stage_statements(tfkit, "fetcher", "freshness_schedule")
    assert schedule["InvokeFreshnessCheck"] == (
        ["lambda:InvokeFunction"],
        ['${module.service.extra_function_arns["freshness"]}'],
    )
    assert schedule["DeadLetterFailedChecks"] == (["sqs:SendMessage"], ["${module.service.dlq_arn}"])


def test_notifier_reads_only_the_channel_secrets_it_is_given(tfkit) -> None:
    """dqad_notifier.channels reads each channel's webhook URL from Secrets Manager: the grant is on the
    secrets the deployment lists (var.channel_secret_arns), never on every secret."""
    st = _stage_statements(tfkit, "notifier")
    assert st["ChannelSecrets"] == (["secretsmanager:GetSecretValue"], ["${var.channel_secret_arns}"])
    assert st["DecryptChannelSecrets"] == (["kms:Decrypt"], ["${var.channel_secrets_kms_key_arns}"])
    assert "ChannelSecrets" not in _stage_statements(tfkit, "notifier", "feedback")


def test_trainer_and_its_job_reach_the_job_requests_and_labels(tfkit) -> None:
    st = _stage_statements(tfkit, "trainer")
    assert st["JobRequests"][1] == ["${local.bucket_arn}/jobs/*"]
    assert st["ReadHumanLabels"][1] == ["${local.bucket_arn}/labels/*"]
    shared = tfkit.policy_documents(tfkit.load_dir(TF / "modules" / "shared"), "shared")["sagemaker"]
    by_sid = {s.where.rsplit(":", 1)[1]: s for s in shared}
    assert "${local.bucket_arn}/jobs/*" in by_sid["ReadInputs"].resources
    # the job writes model versions only, never the champion pointer the trainer promotes
    assert by_sid["WriteModels"].resources == ["${local.bucket_arn}/models/*/*/*"]


def test_the_public_feedback_function_has_its_own_narrow_role(tfkit) -> None:
    feedback = _stage_statements(tfkit, "notifier", "feedback")
    assert {sid: a for sid, (a, _r) in feedback.items()} == {
        "FeedbackKey": ["secretsmanager:GetSecretValue"],
        "WriteFeedbackLabels": ["s3:PutObject"],
    }
    assert not any("labels/" in r for _a, rs in _stage_statements(tfkit, "notifier").values() for r in rs)
    module = tfkit.load_dir(TF / "modules" / "service")
    url_grant = tfkit.resource(module, "aws_lambda_permission", "url")
    assert tfkit.unquote(url_grant["action"]) == "lambda:InvokeFunctionUrl"
    assert tfkit.unquote(url_grant["function_url_auth_type"]) == "NONE"


def test_each_stage_puts_events_only_with_its_own_source(tfkit) -> None:
    body = next(b for t, n, b in tfkit.labelled(tfkit.load_dir(TF / "modules" / "service"), "data") if n == "base")
    publish = next(s for s in body["statement"] if tfkit.unquote(s.get("sid")) == "PublishOnDqadBus")
    cond = tfkit.unquote(tfkit.block(publish, "condition"))
    assert cond["variable"] == "events:source" and cond["values"] == ["dqad.${var.stage}"]
