"""The permission tests' evaluator against AWS's documented evaluation logic for identity policies
(IAM User Guide: "Policy evaluation logic", "IAM JSON policy elements: Condition operators",
"Single-valued vs. multivalued context keys"): the strict instrument is itself checked."""

from __future__ import annotations

import pytest

from tests.iam_policy import Condition, Policy, Request, Statement, condition_holds, wildcard_match

BUCKET = "arn:aws:s3:::b"


def policy(*statements: dict) -> Policy:
    return Policy("p", tuple(Statement.from_json(s) for s in statements))


def allowed(p: Policy, action: str, resource: str, **context: object) -> bool:
    return p.evaluate(Request(action, resource, context)).allowed  # type: ignore[arg-type]


def test_default_deny() -> None:
    p = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET}/runs/*"})
    assert p.evaluate(Request("s3:PutObject", f"{BUCKET}/runs/x")).decision == "ImplicitDeny"
    assert p.evaluate(Request("s3:GetObject", f"{BUCKET}/models/x")).decision == "ImplicitDeny"
    assert Policy("empty", ()).evaluate(Request("s3:GetObject", f"{BUCKET}/x")).decision == "ImplicitDeny"


def test_explicit_deny_wins_over_any_allow() -> None:
    p = policy(
        {"Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {
            "Sid": "NoChampion",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": f"{BUCKET}/models/*/champion.json",
        },
    )
    result = p.evaluate(Request("s3:PutObject", f"{BUCKET}/models/d/champion.json"))
    assert result.decision == "ExplicitDeny" and result.matched == ("NoChampion",)
    assert allowed(p, "s3:PutObject", f"{BUCKET}/models/d/v1/model.dqad")


def test_actions_match_case_insensitively_with_wildcards() -> None:
    p = policy({"Effect": "Allow", "Action": ["s3:Get*", "sqs:?eceiveMessage"], "Resource": "*"})
    assert allowed(p, "S3:getobject", f"{BUCKET}/x")
    assert allowed(p, "s3:GetObjectTagging", f"{BUCKET}/x")
    assert allowed(p, "sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:1:q")
    assert not allowed(p, "s3:PutObject", f"{BUCKET}/x")
    assert not allowed(p, "sqs:ReceiveMessages", "arn:aws:sqs:us-east-1:1:q")


def test_not_action_allows_everything_else() -> None:
    p = policy({"Effect": "Allow", "NotAction": ["iam:*", "s3:DeleteObject"], "Resource": "*"})
    assert allowed(p, "s3:GetObject", f"{BUCKET}/x")
    assert not allowed(p, "s3:DeleteObject", f"{BUCKET}/x")
    assert not allowed(p, "iam:PassRole", "arn:aws:iam::1:role/r")
    # a Deny with NotAction denies all but the listed ones
    q = policy(
        {"Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"},
    )
    assert allowed(q, "s3:GetObject", f"{BUCKET}/x") and not allowed(q, "s3:PutObject", f"{BUCKET}/x")


def test_resource_wildcards_are_case_sensitive_and_span_separators() -> None:
    assert wildcard_match(f"{BUCKET}/runs/*", f"{BUCKET}/runs/d/r/new.parquet")
    assert wildcard_match("arn:aws:sqs:*:123:dqad-?-dlq", "arn:aws:sqs:us-east-1:123:dqad-x-dlq")
    assert not wildcard_match("arn:aws:sqs:*:123:dqad-?-dlq", "arn:aws:sqs:us-east-1:123:dqad-xy-dlq")
    assert not wildcard_match(f"{BUCKET}/Runs/*", f"{BUCKET}/runs/x")
    # models/*/*/* needs three segments after models/ (the SageMaker job's write grant)
    assert wildcard_match(f"{BUCKET}/models/*/*/*", f"{BUCKET}/models/d/v1/model.dqad")
    assert not wildcard_match(f"{BUCKET}/models/*/*/*", f"{BUCKET}/models/d/champion.json")
    # regex metacharacters in a resource are literal
    assert not wildcard_match(f"{BUCKET}/a.b", f"{BUCKET}/aXb")


def test_not_resource() -> None:
    p = policy({"Effect": "Allow", "Action": "s3:GetObject", "NotResource": f"{BUCKET}/secret/*"})
    assert allowed(p, "s3:GetObject", f"{BUCKET}/runs/x") and not allowed(p, "s3:GetObject", f"{BUCKET}/secret/k")


def test_string_equals_on_the_event_source() -> None:
    p = policy({
        "Effect": "Allow", "Action": "events:PutEvents", "Resource": "arn:aws:events:us-east-1:1:event-bus/dqad",
        "Condition": {"StringEquals": {"events:source": "dqad.trainer"}},
    })  # fmt: skip
    bus = "arn:aws:events:us-east-1:1:event-bus/dqad"
    assert allowed(p, "events:PutEvents", bus, **{"events:source": "dqad.trainer"})
    assert not allowed(p, "events:PutEvents", bus, **{"events:source": "dqad.labeler"})
    assert not allowed(p, "events:PutEvents", bus, **{"events:source": "DQAD.trainer"})  # StringEquals is exact
    assert not allowed(p, "events:PutEvents", bus)  # key absent: the condition is false


def test_string_like_on_the_list_prefix() -> None:
    p = policy({
        "Effect": "Allow", "Action": "s3:ListBucket", "Resource": BUCKET,
        "Condition": {"StringLike": {"s3:prefix": ["runs/*", "jobs/*"]}},
    })  # fmt: skip
    assert allowed(p, "s3:ListBucket", BUCKET, **{"s3:prefix": "jobs/dqad-train-1/config/"})
    assert not allowed(p, "s3:ListBucket", BUCKET, **{"s3:prefix": "labels/"})
    assert not allowed(p, "s3:ListBucket", BUCKET)


def test_every_condition_key_and_block_must_hold_values_are_alternatives() -> None:
    p = policy({
        "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
        "Condition": {
            "StringEquals": {"iam:PassedToService": ["sagemaker.amazonaws.com", "lambda.amazonaws.com"]},
            "StringLike": {"aws:userid": "AROA*:trainer"},
        },
    })  # fmt: skip
    ok = {"iam:PassedToService": "lambda.amazonaws.com", "aws:userid": "AROAX:trainer"}
    assert allowed(p, "iam:PassRole", "arn:aws:iam::1:role/r", **ok)
    assert not allowed(p, "iam:PassRole", "arn:aws:iam::1:role/r", **{**ok, "aws:userid": "AROAX:scorer"})
    assert not allowed(p, "iam:PassRole", "arn:aws:iam::1:role/r", **{**ok, "iam:PassedToService": "ec2.amazonaws.com"})


def test_negated_operators_and_if_exists_on_a_missing_key() -> None:
    ne = Condition("StringNotEquals", "aws:SourceVpc", ("vpc-1",))
    assert condition_holds(ne, {})  # a negated operator holds when the key is absent
    assert not condition_holds(ne, {"aws:SourceVpc": "vpc-1"})
    assert condition_holds(ne, {"aws:SourceVpc": "vpc-2"})
    like = Condition("StringLikeIfExists", "s3:prefix", ("runs/*",))
    assert condition_holds(like, {}) and not condition_holds(like, {"s3:prefix": "labels/"})
    assert condition_holds(Condition("Null", "s3:prefix", ("true",)), {})
    assert not condition_holds(Condition("Null", "s3:prefix", ("false",)), {})
    assert condition_holds(Condition("Bool", "aws:SecureTransport", ("false",)), {"aws:SecureTransport": False})


def test_set_operators_on_multivalued_keys() -> None:
    all_of = Condition("ForAllValues:StringEquals", "events:source", ("dqad.trainer",))
    assert condition_holds(all_of, {"events:source": ["dqad.trainer", "dqad.trainer"]})
    assert not condition_holds(all_of, {"events:source": ["dqad.trainer", "dqad.labeler"]})
    assert condition_holds(all_of, {})  # ForAllValues holds for an absent key (AWS's documented pitfall)
    any_of = Condition("ForAnyValue:StringLike", "aws:TagKeys", ("dqad:*",))
    assert condition_holds(any_of, {"aws:TagKeys": ["other", "dqad:job"]})
    assert not condition_holds(any_of, {"aws:TagKeys": ["other"]}) and not condition_holds(any_of, {})
    # a single-valued operator on several request values is a policy mistake, not a silent pass
    with pytest.raises(ValueError, match="several values"):
        condition_holds(Condition("StringEquals", "events:source", ("a",)), {"events:source": ["a", "b"]})


def test_policy_variables_come_from_the_request_context() -> None:
    p = policy({
        "Effect": "Allow", "Action": "redshift-data:DescribeStatement", "Resource": "*",
        "Condition": {"StringEquals": {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}},
    })  # fmt: skip
    me = {"aws:userid": "AROAX:fetcher"}
    assert allowed(
        p, "redshift-data:DescribeStatement", "*", **me, **{"redshift-data:statement-owner-iam-userid": "AROAX:fetcher"}
    )
    assert not allowed(
        p, "redshift-data:DescribeStatement", "*", **me, **{"redshift-data:statement-owner-iam-userid": "AROAY:x"}
    )
    q = policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": BUCKET + "/home/${aws:username}/*"})
    assert allowed(q, "s3:GetObject", f"{BUCKET}/home/ana/f", **{"aws:username": "ana"})
    assert not allowed(q, "s3:GetObject", f"{BUCKET}/home/bob/f", **{"aws:username": "ana"})
    assert not allowed(q, "s3:GetObject", f"{BUCKET}/home/ana/f")  # variable missing: no match


def test_an_unknown_operator_is_refused_not_passed() -> None:
    with pytest.raises(ValueError, match="not implemented"):
        condition_holds(Condition("NumericLessThan", "s3:max-keys", ("10",)), {"s3:max-keys": "5"})
    with pytest.raises(ValueError, match="exactly one of Action"):
        Statement(sid="x", actions=("s3:GetObject",), not_actions=("s3:PutObject",), resources=("*",))


def test_without_removes_one_action_or_one_statement() -> None:
    p = policy({"Sid": "A", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "*"})
    assert not allowed(p.without("A", "s3:GetObject"), "s3:GetObject", f"{BUCKET}/x")
    assert allowed(p.without("A", "s3:GetObject"), "s3:PutObject", f"{BUCKET}/x")
    assert not p.without("A").statements
    with pytest.raises(KeyError):
        p.without("B")
