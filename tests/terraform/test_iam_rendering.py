"""The permission tests' other two parts: Terraform's policy documents rendered to concrete policies,
and botocore calls mapped to the IAM requests AWS authorises (tests/iam_enforce.py)."""

from __future__ import annotations

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


def test_an_unknown_terraform_reference_is_an_error_not_a_dropped_grant() -> None:
    with pytest.raises(KeyError, match="cannot resolve"):
        _Resolver({}, {}).value('"${var.somewhere}/x"')
    assert _Resolver({"var.a": "A"}, {}).value('"${var.a}/$${aws:userid}"') == "A/${aws:userid}"


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
