"""Every Terraform file parses, roots that must be identical are, and conventions hold everywhere.

Why: there is no terraform binary here, so python-hcl2 is the syntax check; the copies of the root
files (one root per environment, one per service) are only safe while they stay identical; and the
rules of docs/architecture.md §8.7 (no silent default for anything that names a resource, tags everywhere) are
easy to break one variable at a time.
"""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest

from dqad.topology import STAGE_NAMES

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
ALL_TF = sorted(TF.rglob("*.tf"))
ALL_TFVARS = sorted(TF.rglob("*.tfvars")) + sorted(TF.rglob("*.hcl"))
TAG_KEYS = {"access-department", "access-team", "BillTagId", "access-org", "TagID"}
# Resource types that take tags; each must set them explicitly (default_tags cover the rest).
TAGGABLE = {
    "aws_cloudwatch_event_bus", "aws_cloudwatch_event_rule", "aws_cloudwatch_log_group",
    "aws_cloudwatch_metric_alarm", "aws_dynamodb_table", "aws_ecr_repository", "aws_iam_role",
    "aws_kms_key", "aws_lambda_function", "aws_s3_bucket", "aws_s3_object", "aws_secretsmanager_secret",
    "aws_security_group", "aws_sns_topic", "aws_sqs_queue", "aws_vpc_endpoint",
}  # fmt: skip
# Variables whose value names or points at a resource: a concrete default would be a silent choice.
NAMING_VARIABLE = re.compile(r"(^|_)(name|prefix|bucket|arn|arns|identifier|uri|emails|path|id|ids|services)$")


def test_there_is_terraform() -> None:
    assert len(ALL_TF) > 20


@pytest.mark.parametrize("path", ALL_TF + ALL_TFVARS, ids=lambda p: str(p.relative_to(TF)))
def test_parses(tfkit, path: Path) -> None:
    tfkit.load(path)


@pytest.mark.parametrize("name", ["versions.tf", "stage_variables.tf", "common.tf"])
def test_service_roots_share_their_common_files(name: str) -> None:
    """One file in roots/service/, linked from every service root: no copies to drift apart."""
    source = (TF / "roots" / "service" / name).resolve()
    for stage in STAGE_NAMES:
        link = TF / "services" / stage / name
        assert link.is_symlink() and link.resolve() == source, f"services/{stage}/{name} is not a link to {source}"


def test_every_root_takes_the_deployment_variables_from_one_file() -> None:
    """region, name_prefix, tags, shared_state: one declaration, linked from every env and service root."""
    source = (TF / "roots" / "deployment_variables.tf").resolve()
    roots = [p for p in (TF / "envs").iterdir() if p.is_dir()] + [TF / "services" / s for s in STAGE_NAMES]
    for root in roots:
        link = root / "deployment_variables.tf"
        assert link.is_symlink() and link.resolve() == source, f"{root.name}/deployment_variables.tf is not a link"


def test_environment_roots_differ_only_in_tfvars() -> None:
    envs = sorted(p for p in (TF / "envs").iterdir() if p.is_dir())
    assert {e.name for e in envs} >= {"dev", "prod"}
    for env in envs[1:]:
        ref = sorted(p.name for p in envs[0].glob("*.tf"))
        assert sorted(p.name for p in env.glob("*.tf")) == ref
        diff = [n for n in ref if not filecmp.cmp(envs[0] / n, env / n, shallow=False)]
        assert not diff, f"envs/{env.name}: {diff} differ from envs/{envs[0].name}"
        assert all((env / n).is_symlink() for n in ref), f"envs/{env.name}: .tf files must link to roots/"
        for stage in (*STAGE_NAMES, "common", "shared"):
            assert (env / f"{stage}.tfvars").exists(), f"envs/{env.name}/{stage}.tfvars missing"


def _variables(tfkit):
    for path in ALL_TF:
        for name, body in tfkit.named(tfkit.load(path), "variable").items():
            yield path, name, body


def test_variables_are_documented_and_typed(tfkit) -> None:
    missing = [f"{p.relative_to(TF)}:{n}" for p, n, b in _variables(tfkit) if "description" not in b or "type" not in b]
    assert not missing


def test_no_silent_default_for_what_names_a_resource(tfkit) -> None:
    """A variable naming a resource is required, or defaults to null (= "none" / "create one")."""
    silent = [
        f"{p.relative_to(TF)}:{n} = {b['default']!r}"
        for p, n, b in _variables(tfkit)
        if NAMING_VARIABLE.search(n) and "default" in b and b["default"] not in (None, "null")
        and n not in {"interface_services", "gateway_services", "subnet_ids", "security_group_ids",
                      "secrets_kms_key_arns", "alert_emails", "operator_emails"}
    ]  # fmt: skip
    # The exceptions above are lists whose default is "none" ([]) or the documented endpoint set.
    assert not silent


def test_every_root_tags_through_default_tags(tfkit) -> None:
    roots = [TF / "services" / s for s in STAGE_NAMES] + sorted(p for p in (TF / "envs").iterdir() if p.is_dir())
    for root in roots:
        doc = tfkit.load_dir(root)
        provider = doc["provider"][0]['"aws"' if '"aws"' in doc["provider"][0] else "aws"]
        assert tfkit.block(provider, "default_tags")["tags"] == "${local.tags}", root
        tags = tfkit.locals_of(doc)["tags"]
        for key in TAG_KEYS:
            assert f'"{key}"' in tags or f"{key} " in tags, f"{root.name}: tag {key} missing from local.tags"


def test_taggable_resources_carry_tags(tfkit) -> None:
    untagged = [
        f"{p.relative_to(TF)}: {t}.{n}"
        for p in ALL_TF
        for t, n, body in tfkit.labelled(tfkit.load(p), "resource")
        if t in TAGGABLE and "tags" not in body
    ]
    assert not untagged
