"""The permission tests' other two parts: Terraform's policy documents rendered to concrete policies,
and botocore calls mapped to the IAM requests AWS authorises (tests/iam_enforce.py)."""

from __future__ import annotations

import dataclasses

import pytest

from tests.iam_enforce import Deployed, _Resolver, requests_for, role_policies
from tests.iam_policy import Request

DEP = Deployed("dqad-x", "dqad-x-bucket", "arn:aws:secretsmanager:us-east-1:123456789012:secret:sign-AbC", "fb-arn")


def test_every_role_renders_with_concrete_arns() -> None:
    policies = role_policies(DEP)
    assert set(policies) == {
        "fetcher",
        "labeler",
        "trainer",
        "scorer",
        "notifier",
        "notifier-feedback",
        "sagemaker-job",
        "fetcher-freshness-schedule",
        "fetcher-aurora-invoke",
    }
    for p in policies.values():
        for st in p.statements:
            assert all("${" not in r or r.endswith("${aws:userid}") for r in st.resources), (p.name, st)
    trainer = policies["trainer"]
    assert trainer.evaluate(Request("s3:PutObject", "arn:aws:s3:::dqad-x-bucket/models/d/champion.json")).allowed
    job = policies["sagemaker-job"]
    assert not job.evaluate(Request("s3:PutObject", "arn:aws:s3:::dqad-x-bucket/models/d/champion.json")).allowed
    bus = "arn:aws:events:us-east-1:123456789012:event-bus/dqad-x"
    assert policies["labeler"].evaluate(Request("events:PutEvents", bus, {"events:source": "dqad.labeler"})).allowed
    assert not policies["labeler"].evaluate(Request("events:PutEvents", bus, {"events:source": "dqad.trainer"})).allowed


def test_the_channel_statements_render_only_for_the_channel_secrets_given() -> None:
    """``length(var.channel_secret_arns) > 0 ? [1] : []``, for both an empty and a non-empty list."""
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dqad-x-slack-AbC"
    key = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-4111-8111-111111111111"
    none = role_policies(dataclasses.replace(DEP, channel_secret_arns=(), channel_secrets_kms_key_arns=()))["notifier"]
    assert not any("Channel" in st.sid for st in none.statements)
    both = role_policies(dataclasses.replace(DEP, channel_secret_arns=(secret,), channel_secrets_kms_key_arns=(key,)))
    sids = {st.sid: (st.actions, st.resources) for st in both["notifier"].statements}
    assert sids["stage:ChannelSecrets"] == (("secretsmanager:GetSecretValue",), (secret,))
    assert sids["stage:DecryptChannelSecrets"] == (("kms:Decrypt",), (key,))
    assert both["notifier"].evaluate(Request("secretsmanager:GetSecretValue", secret)).allowed
    assert not none.evaluate(Request("secretsmanager:GetSecretValue", secret)).allowed
    assert not any("Channel" in st.sid for st in both["notifier-feedback"].statements)


def test_the_freshness_schedule_may_only_invoke_the_check() -> None:
    policies = role_policies(DEP)
    schedule = policies["fetcher-freshness-schedule"]
    fn = "arn:aws:lambda:us-east-1:123456789012:function:dqad-x-fetcher-"
    assert schedule.evaluate(Request("lambda:InvokeFunction", fn + "freshness")).allowed
    assert not schedule.evaluate(Request("lambda:InvokeFunction", fn + "aurora")).allowed
    dlq = "arn:aws:sqs:us-east-1:123456789012:dqad-x-fetcher-dlq"
    assert schedule.evaluate(Request("sqs:SendMessage", dlq)).allowed
    assert not policies["fetcher-aurora-invoke"].evaluate(Request("lambda:InvokeFunction", fn + "freshness")).allowed
    state = "arn:aws:s3:::dqad-x-bucket/freshness/d/state.json"
    assert all(policies["fetcher"].evaluate(Request(a, state)).allowed for a in ("s3:GetObject", "s3:PutObject"))
    assert not policies["notifier"].evaluate(Request("s3:PutObject", state)).allowed


def test_an_unknown_terraform_reference_is_an_error_not_a_dropped_grant() -> None:
    with pytest.raises(KeyError, match="cannot resolve"):
        _Resolver({}, {}).value('"${var.somewhere}/x"')
    assert _Resolver({"var.a": "A"}, {}).value('"${var.a}/$${aws:userid}"') == "A/${aws:userid}"
    with pytest.raises(KeyError, match="cannot resolve"):  # a conditional on an unbound list too
        _Resolver({}, {}).value("${length(var.somewhere) > 0 ? [1] : []}")


def test_calls_map_to_the_requests_aws_authorises() -> None:
    entries = [{"Source": "dqad.scorer", "DetailType": "AnomaliesScored", "EventBusName": "dqad-x"},
               {"Source": "aws.sagemaker", "DetailType": "x"}]  # fmt: skip
    reqs = requests_for("events", "PutEvents", {"Entries": entries}, {})
    assert [(r.resource, r.context["events:source"]) for r in reqs] == [
        ("arn:aws:events:us-east-1:123456789012:event-bus/dqad-x", "dqad.scorer"),
        ("arn:aws:events:us-east-1:123456789012:event-bus/default", "aws.sagemaker"),
    ]
    [listing] = requests_for("s3", "ListObjectsV2", {"Bucket": "b", "Prefix": "runs/d/"}, {})
    assert (listing.action, listing.resource, listing.context) == (
        "s3:ListBucket",
        "arn:aws:s3:::b",
        {"s3:prefix": "runs/d/"},
    )
    job = {
        "ProcessingJobName": "dqad-train-1",
        "RoleArn": "arn:aws:iam::1:role/j",
        "Tags": [{"Key": "k", "Value": "v"}],
    }
    assert [r.action for r in requests_for("sagemaker", "CreateProcessingJob", job, {})] == [
        "sagemaker:CreateProcessingJob", "sagemaker:AddTags", "iam:PassRole",
    ]  # fmt: skip
    [sqs] = requests_for(
        "sqs", "SendMessage", {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/q-dlq"}, {}
    )
    assert sqs.resource == "arn:aws:sqs:us-east-1:123456789012:q-dlq"
    with pytest.raises(NotImplementedError, match="no IAM mapping"):
        requests_for("lambda", "Invoke", {}, {})
