"""Every AWS request of a stage evaluated against the policy its Terraform role grants.

Why: moto grants everything, so the chain on moto proves nothing about the deployed roles
(docs/architecture.md §8, habit 10; docs/security.md, "How permissions are enforced in the tests").
Three parts:

* :func:`role_policies` renders the identity policies of every role from ``terraform/`` (the
  ``aws_iam_policy_document`` blocks, their ``dynamic`` statements and ``source_policy_documents``),
  with each Terraform reference resolved to the test deployment's concrete ARN. A reference this
  module cannot resolve raises: a new grant in Terraform is never silently dropped.
* :func:`requests_for` maps one botocore operation and its parameters to the IAM requests AWS
  authorises for it (action, resource ARN, condition keys), e.g. one ``events:PutEvents`` per entry
  with its ``events:source``, ``s3:ListBucket`` with ``s3:prefix``, ``iam:PassRole`` for the role a
  processing job is given. An operation without a mapping raises, so a new AWS call is noticed.
* :class:`Enforcer` patches botocore's ``BaseClient._make_api_call`` (every client of every
  session, including those created before the test and those s3transfer's threads use) and
  ``generate_presigned_url`` (for clients created after it is installed). While a principal is
  acting, each request is evaluated with :mod:`tests.iam_policy`; a denied one raises
  ``ClientError`` ``AccessDenied`` as AWS does, before moto sees it. With no principal acting (the
  test harness provisioning and inspecting moto), calls pass unchecked.

The principal is a plain attribute, not a context variable: s3transfer uploads from worker
threads, which would not inherit a context variable and so would escape the check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import botocore.signers
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from dqad.topology import SAGEMAKER_JOB_PREFIX, STAGE_NAMES, Names
from dqad_dev.local import ACCOUNT, REGION
from tests.iam_policy import Condition, Policy, Request, Result, Statement
from tests.terraform import tfkit

PARTITION = "aws"
SAGEMAKER_JOB = "sagemaker-job"
FEEDBACK = "notifier-feedback"
# The fetcher's Redshift in the rendered policy: serverless, no secrets beyond the outbox DSN. The
# chain's dataset reads a file, so no Redshift request is made; the grants are still rendered.
REDSHIFT_WORKGROUP_ARN = f"arn:{PARTITION}:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/dqad-test"


# --------------------------------------------------------------------------------------------------
# The deployment's concrete names
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Deployed:
    prefix: str
    bucket: str
    model_signing_secret_arn: str
    feedback_secret_arn: str
    outbox_dsn_secret_arn: str = f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:dqad-outbox-dsn-AbCdEf"
    kms_key_arn: str = f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/00000000-0000-4000-8000-000000000000"
    # the notifier's var.channel_secret_arns / var.channel_secrets_kms_key_arns (() renders no statement)
    channel_secret_arns: tuple[str, ...] = (
        f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:dqad-channel-slack-AbCdEf",
    )
    channel_secrets_kms_key_arns: tuple[str, ...] = ()

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def bucket_arn(self) -> str:
        return f"arn:{PARTITION}:s3:::{self.bucket}"

    @property
    def sagemaker_role_arn(self) -> str:
        return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{self.prefix}-sagemaker"

    def queue_arn(self, name: str) -> str:
        return f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}"

    def topic_arn(self, name: str) -> str:
        return f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}"

    def log_group_arn(self, function: str) -> str:
        return f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function}"

    def function_arn(self, function: str) -> str:
        return f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{function}"


# --------------------------------------------------------------------------------------------------
# Terraform policy documents -> Policy
# --------------------------------------------------------------------------------------------------
_REF = re.compile(r"(?<!\$)\$\{([^}]*)\}")


def extra_functions(stage: str) -> dict[str, dict]:
    """The stage root's ``extra_functions`` of ``module "service"`` (entry point -> settings)."""
    module = tfkit.named(tfkit.load_dir(tfkit.TF / "services" / stage), "module")["service"]
    raw = module.get("extra_functions", {})
    return {tfkit.unquote(k): v for k, v in raw.items() if not k.startswith("__")} if isinstance(raw, dict) else {}


def own_role_entries(stage: str) -> set[str]:
    """Entry points that run under their own role (``policy_json`` set), not the stage's."""
    return {entry for entry, spec in extra_functions(stage).items() if "policy_json" in spec}


#: Roles a stage root gives an AWS service to invoke one of its entry points (principal -> stage,
#: policy document, entry point): EventBridge Scheduler runs the freshness check with its own role,
#: Aurora's ``aws_lambda.invoke`` (the trigger of sql/install.sql) calls the aurora entry point with one.
INVOKER_ROLES: dict[str, tuple[str, str, str]] = {
    "fetcher-freshness-schedule": ("fetcher", "freshness_schedule", "freshness"),
    "fetcher-aurora-invoke": ("fetcher", "aurora_invoke", "aurora"),
}


def invoker_of(stage: str, entry: str) -> str | None:
    """The role that invokes ``stage``'s ``entry`` on AWS (None: no role of ours, e.g. SQS, a URL)."""
    return next((p for p, (s, _doc, e) in INVOKER_ROLES.items() if (s, e) == (stage, entry)), None)


class _Resolver:
    """Evaluates the few expression forms the policy documents use, from a table of references."""

    def __init__(self, bindings: dict[str, Any], local_defs: dict[str, Any]) -> None:
        self.bindings = bindings
        self.local_defs = local_defs

    def ref(self, expr: str) -> Any:
        expr = expr.strip()
        if expr in self.bindings:
            return self.bindings[expr]
        if expr.startswith("local.") and expr[6:] in self.local_defs:
            return self.value(self.local_defs[expr[6:]])
        # a statement present only for a non-empty list (for_each of a dynamic block): that list's value
        only_if = re.fullmatch(r"length\(([\w.]+)\) > 0 \? \[1\] : \[\]", expr)
        if only_if:
            return [1] if self.ref(only_if.group(1)) else []
        raise KeyError(f"the permission tests cannot resolve Terraform expression {expr!r}: add it to the bindings")

    def template(self, text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            value = self.ref(m.group(1))
            if not isinstance(value, str):
                raise KeyError(f"{m.group(1)!r} is not a string in {text!r}")
            return value

        return _REF.sub(sub, text).replace("$${", "${")  # $${x} is Terraform's literal ${x}

    def value(self, raw: Any) -> Any:
        if isinstance(raw, list):
            out: list[str] = []
            for item in raw:
                v = self.value(item)
                out.extend(v if isinstance(v, list) else [v])
            return out
        if not isinstance(raw, str):
            raise KeyError(f"unexpected Terraform value {raw!r}")
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            return self.template(raw[1:-1])
        whole = re.fullmatch(r"\$\{(.*)\}", raw, re.DOTALL)
        if whole:
            return self.ref(whole.group(1))
        return raw


def _statements(docs: dict[str, dict], name: str, r: _Resolver, label: str) -> list[Statement]:
    body = docs[name]
    out: list[Statement] = []
    for source in body.get("source_policy_documents", []):
        m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", source)
        if not m:
            raise KeyError(f"source_policy_documents entry {source!r}")
        out.extend(_statements(docs, m.group(1), r, m.group(1)))
    bodies = list(body.get("statement", []))
    for dyn in body.get("dynamic", []):
        for dyn_label, spec in dyn.items():
            if tfkit.unquote(dyn_label) != "statement":
                continue
            for_each = r.value(spec["for_each"])
            if for_each:
                bodies.extend(spec["content"])
    for s in bodies:
        conditions = tuple(
            Condition(tfkit.unquote(c["test"]), tfkit.unquote(c["variable"]), tuple(r.value(c["values"])))
            for c in s.get("condition", [])
        )
        not_actions = tuple(r.value(s.get("not_actions", [])))
        out.append(
            Statement(
                sid=f"{label}:{tfkit.unquote(s.get('sid', '?'))}",
                effect=tfkit.unquote(s.get("effect", '"Allow"')),
                actions=tuple(r.value(s.get("actions", []))),
                not_actions=not_actions,
                resources=tuple(r.value(s.get("resources", []))),
                not_resources=tuple(r.value(s.get("not_resources", []))),
                conditions=conditions,
            )
        )
    return out


def _docs(directory: str) -> tuple[dict[str, dict], dict[str, Any]]:
    doc = tfkit.load_dir(tfkit.TF / directory)
    bodies = {n: b for t, n, b in tfkit.labelled(doc, "data") if t == "aws_iam_policy_document"}
    return bodies, tfkit.locals_of(doc)


def _common_bindings(dep: Deployed) -> dict[str, Any]:
    names = dep.names
    return {
        "local.partition": PARTITION,
        "local.aws_region": REGION,
        "local.region": REGION,
        "local.account": ACCOUNT,
        "local.bucket_arn": dep.bucket_arn,
        "local.kms_key_arn": dep.kms_key_arn,
        "local.shared.kms_key_arn": dep.kms_key_arn,
        "local.shared.model_signing_secret_arn": dep.model_signing_secret_arn,
        "local.shared.sagemaker_role_arn": dep.sagemaker_role_arn,
        "local.shared.alerts_topic_arn": dep.topic_arn(names.alerts_topic),
        "local.shared.operator_topic_arn": dep.topic_arn(names.operator_topic),
        "local.shared.idempotency_table_arn": (
            f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{names.idempotency_table}"
        ),
        "local.shared.shards_table_arn": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{names.shards_table}",
        "local.topology.sagemaker_job_prefix": SAGEMAKER_JOB_PREFIX,
        "aws_secretsmanager_secret.feedback.arn": dep.feedback_secret_arn,
        # no subnet_ids in the test deployment
        "local.in_vpc ? [1] : []": [],
        # the fetcher's Redshift (see REDSHIFT_WORKGROUP_ARN)
        "local.redshift_targets": [REDSHIFT_WORKGROUP_ARN],
        "local.fetcher_secrets": [dep.outbox_dsn_secret_arn],
        "length(local.redshift_dbuser_arns) > 0 ? [1] : []": [],
        "var.redshift.cluster_identifier != null && var.redshift.db_user == null ? [1] : []": [],
        "var.redshift.workgroup_arn == null ? [] : [1]": [1],
        "var.redshift.workgroup_arn": REDSHIFT_WORKGROUP_ARN,
        "length(var.secrets_kms_key_arns) > 0 ? [1] : []": [],
        # modules/shared: the ECR repositories of the image services (the job pulls the trainer's)
        "length(local.sagemaker_ecr_arns) > 0 ? [1] : []": [1],
        "local.sagemaker_ecr_arns": [f"arn:{PARTITION}:ecr:{REGION}:{ACCOUNT}:repository/{dep.prefix}/trainer"],
    }


def _module_bindings(dep: Deployed, stage: str, entry: str = "main") -> dict[str, Any]:
    names = dep.names
    functions = [names.function(stage)] + [names.function(stage, e) for e in extra_functions(stage)]
    return {
        "var.stage": stage,
        "var.bucket_arn": dep.bucket_arn,
        "var.bus_arn": f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{names.bus}",
        "var.kms_key_arn": dep.kms_key_arn,
        "aws_sqs_queue.queue.arn": dep.queue_arn(names.queue(stage)),
        "aws_sqs_queue.dlq.arn": dep.queue_arn(names.dlq(stage)),
        '[for g in aws_cloudwatch_log_group.function : "${g.arn}:*"]': [f"{dep.log_group_arn(f)}:*" for f in functions],
        "aws_cloudwatch_log_group.function[each.key].arn": dep.log_group_arn(names.function(stage, entry)),
        "var.reads_catalog ? [1] : []": [1] if _module_argument(stage, "reads_catalog", "true") == "true" else [],
        # the root's references to the module (the roles of the invokers, INVOKER_ROLES)
        "module.service.dlq_arn": dep.queue_arn(names.dlq(stage)),
        **{
            f'module.service.extra_function_arns["{e}"]': dep.function_arn(names.function(stage, e))
            for e in extra_functions(stage)
        },
        # the notifier's channels (dqad_notifier.channels)
        "var.channel_secret_arns": list(dep.channel_secret_arns),
        "var.channel_secrets_kms_key_arns": list(dep.channel_secrets_kms_key_arns),
    }


def _module_argument(stage: str, name: str, default: str) -> str:
    """A literal argument the stage root passes to modules/service (its default when absent)."""
    module = tfkit.named(tfkit.load_dir(tfkit.TF / "services" / stage), "module")["service"]
    return str(tfkit.unquote(module.get(name, default))).lower()


def role_policies(dep: Deployed) -> dict[str, Policy]:
    """Principal -> its identity policy as Terraform renders it for ``dep``.

    Principals: each stage's role (``modules/service`` base + the root's ``stage`` document), each
    entry point with its own role (``<stage>-<entry>``: ``extra_logs`` + its own document), the roles
    an AWS service invokes an entry point with (:data:`INVOKER_ROLES`: the freshness check's schedule,
    the Aurora trigger) and the SageMaker Processing job role (``modules/shared``).
    """
    module_docs, module_locals = _docs("modules/service")
    out: dict[str, Policy] = {}
    for stage in STAGE_NAMES:
        root_docs, root_locals = _docs(f"services/{stage}")
        bindings = {**_common_bindings(dep), **_module_bindings(dep, stage)}
        mod = _Resolver(bindings, module_locals)
        root = _Resolver(bindings, root_locals)
        out[stage] = Policy(
            stage, (*_statements(module_docs, "base", mod, "base"), *_statements(root_docs, "stage", root, "stage"))
        )
        for entry in own_role_entries(stage):
            spec = extra_functions(stage)[entry]
            m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", spec["policy_json"])
            assert m, spec["policy_json"]
            bindings_e = {**_common_bindings(dep), **_module_bindings(dep, stage, entry)}
            out[f"{stage}-{entry}"] = Policy(
                f"{stage}-{entry}",
                (
                    *_statements(module_docs, "extra_logs", _Resolver(bindings_e, module_locals), "extra_logs"),
                    *_statements(root_docs, m.group(1), _Resolver(bindings_e, root_locals), m.group(1)),
                ),
            )
    for principal, (stage, doc, _entry) in INVOKER_ROLES.items():
        root_docs, root_locals = _docs(f"services/{stage}")
        bindings = {**_common_bindings(dep), **_module_bindings(dep, stage)}
        out[principal] = Policy(principal, tuple(_statements(root_docs, doc, _Resolver(bindings, root_locals), doc)))
    shared_docs, shared_locals = _docs("modules/shared")
    out[SAGEMAKER_JOB] = Policy(
        SAGEMAKER_JOB,
        tuple(_statements(shared_docs, "sagemaker", _Resolver(_common_bindings(dep), shared_locals), "sagemaker")),
    )
    return out


def principal_of(stage: str, entry: str | None = None) -> str:
    """Whose role an entry point runs under: its own when Terraform gives it one, else the stage's."""
    return f"{stage}-{entry}" if entry and entry in own_role_entries(stage) else stage


# --------------------------------------------------------------------------------------------------
# botocore operation -> IAM requests
# --------------------------------------------------------------------------------------------------
def _s3_object(bucket: str, key: str) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}/{key}"


def _queue_arn_of_url(url: str) -> str:
    parts = urlparse(url).path.strip("/").split("/")
    return f"arn:{PARTITION}:sqs:{REGION}:{parts[-2]}:{parts[-1]}"


def _bus_arn(name: str | None) -> str:
    name = name or "default"
    return name if name.startswith("arn:") else f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{name}"


_S3_OBJECT_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
}
_SQS_ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "SendMessage": "sqs:SendMessage",
    "SendMessageBatch": "sqs:SendMessage",
    "GetQueueAttributes": "sqs:GetQueueAttributes",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def requests_for(service: str, operation: str, params: dict[str, Any], secrets: dict[str, str]) -> list[Request]:
    """The IAM requests AWS authorises for one API call (``secrets``: name -> ARN, for SecretId)."""
    if service == "s3":
        if operation in _S3_OBJECT_ACTIONS:
            return [Request(_S3_OBJECT_ACTIONS[operation], _s3_object(params["Bucket"], params["Key"]))]
        if operation == "DeleteObjects":
            return [
                Request("s3:DeleteObject", _s3_object(params["Bucket"], o["Key"])) for o in params["Delete"]["Objects"]
            ]
        if operation == "CopyObject":
            src = params["CopySource"]
            src_bucket, _, src_key = (
                src.lstrip("/").partition("/") if isinstance(src, str) else (src["Bucket"], "/", src["Key"])
            )
            return [
                Request("s3:GetObject", _s3_object(src_bucket, src_key)),
                Request("s3:PutObject", _s3_object(params["Bucket"], params["Key"])),
            ]
        if operation in ("ListObjectsV2", "ListObjects"):
            ctx = {"s3:prefix": params.get("Prefix", "")}
            if "Delimiter" in params:
                ctx["s3:delimiter"] = params["Delimiter"]
            return [Request("s3:ListBucket", f"arn:{PARTITION}:s3:::{params['Bucket']}", ctx)]
        if operation == "HeadBucket":
            return [Request("s3:ListBucket", f"arn:{PARTITION}:s3:::{params['Bucket']}")]
    elif service == "sqs":
        if operation == "GetQueueUrl":
            owner = params.get("QueueOwnerAWSAccountId", ACCOUNT)
            return [Request("sqs:GetQueueUrl", f"arn:{PARTITION}:sqs:{REGION}:{owner}:{params['QueueName']}")]
        if operation in _SQS_ACTIONS:
            return [Request(_SQS_ACTIONS[operation], _queue_arn_of_url(params["QueueUrl"]))]
    elif service == "events" and operation == "PutEvents":
        # EventBridge authorises each entry with its own source and detail-type.
        return [
            Request(
                "events:PutEvents",
                _bus_arn(e.get("EventBusName")),
                {"events:source": e.get("Source", ""), "events:detail-type": e.get("DetailType", "")},
            )
            for e in params["Entries"]
        ]
    elif service == "sns" and operation == "Publish":
        return [Request("sns:Publish", params.get("TopicArn") or params["TargetArn"])]
    elif service == "secretsmanager" and operation in ("GetSecretValue", "DescribeSecret"):
        sid = params["SecretId"]
        arn = (
            sid
            if sid.startswith("arn:")
            else secrets.get(sid, f"arn:{PARTITION}:secretsmanager:{REGION}:{ACCOUNT}:secret:{sid}")
        )
        return [Request(f"secretsmanager:{operation}", arn)]
    elif service == "dynamodb" and operation in ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"):
        return [
            Request(f"dynamodb:{operation}", f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{params['TableName']}")
        ]
    elif service == "sagemaker" and operation == "CreateProcessingJob":
        job = f"arn:{PARTITION}:sagemaker:{REGION}:{ACCOUNT}:processing-job/{params['ProcessingJobName'].lower()}"
        out = [Request("sagemaker:CreateProcessingJob", job)]
        if params.get("Tags"):
            out.append(Request("sagemaker:AddTags", job))
        out.append(Request("iam:PassRole", params["RoleArn"], {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        return out
    elif service == "redshift-data":
        if operation == "ExecuteStatement":
            target = params.get("WorkgroupName") or params.get("ClusterIdentifier")
            if params.get("WorkgroupName"):
                resource = f"arn:{PARTITION}:redshift-serverless:{REGION}:{ACCOUNT}:workgroup/{target}"
            else:
                resource = f"arn:{PARTITION}:redshift:{REGION}:{ACCOUNT}:cluster:{target}"
            return [Request("redshift-data:ExecuteStatement", resource)]
        if operation in ("DescribeStatement", "CancelStatement", "GetStatementResult"):
            # The Data API reports the statement's owner; the test's statements are the caller's own.
            return [
                Request(
                    f"redshift-data:{operation}", "*", {"redshift-data:statement-owner-iam-userid": "${aws:userid}"}
                )
            ]
    elif service == "kms" and operation in ("Decrypt", "GenerateDataKey", "Encrypt"):
        return [Request(f"kms:{operation}", params.get("KeyId", "*"))]
    raise NotImplementedError(
        f"tests/iam_enforce.py has no IAM mapping for {service}.{operation}: add one (the action, the "
        "resource ARN and the condition keys AWS evaluates for it)"
    )


# --------------------------------------------------------------------------------------------------
# The enforcer
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluated:
    principal: str
    operation: str  # "s3.GetObject"
    request: Request
    result: Result


def access_denied(principal: str, operation: str, request: Request) -> ClientError:
    service, op = operation.split(".", 1)
    code = "403" if op == "HeadObject" else "AccessDeniedException" if service != "s3" else "AccessDenied"
    if service in ("sqs", "sns"):
        code = "AccessDenied" if service == "sqs" else "AuthorizationError"
    message = f"User: arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/{principal} is not authorized to perform: {request}"
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}, op)


@dataclass
class Enforcer:
    policies: dict[str, Policy]
    secrets: dict[str, str] = field(default_factory=dict)  # secret name -> ARN
    log: list[Evaluated] = field(default_factory=list)
    principal: str | None = None

    def userid(self, principal: str) -> str:
        return f"AROATEST{principal.upper().replace('-', '')}:{principal}"

    @contextmanager
    def acting_as(self, principal: str | None) -> Iterator[None]:
        if principal is not None and principal not in self.policies:
            raise KeyError(f"no policy rendered for {principal!r}")
        before, self.principal = self.principal, principal
        try:
            yield
        finally:
            self.principal = before

    def check(self, principal: str, operation: str, requests: list[Request]) -> None:
        """Evaluate every request; raise AccessDenied (as AWS) on the first one not granted."""
        policy = self.policies[principal]
        for req in requests:
            ctx = {"aws:userid": self.userid(principal), **req.context}
            ctx = {
                k: (v.replace("${aws:userid}", ctx["aws:userid"]) if isinstance(v, str) else v) for k, v in ctx.items()
            }
            concrete = Request(req.action, req.resource, ctx)
            result = policy.evaluate(concrete)
            self.log.append(Evaluated(principal, operation, concrete, result))
            if not result.allowed:
                raise access_denied(principal, operation, concrete)

    def denials(self) -> list[Evaluated]:
        return [e for e in self.log if not e.result.allowed]

    def install(self, monkeypatch: Any) -> None:
        original_call = BaseClient._make_api_call
        original_presign = botocore.signers.generate_presigned_url
        enforcer = self

        def _make_api_call(client: BaseClient, operation_name: str, api_params: dict) -> Any:
            principal = enforcer.principal
            if principal is None:
                return original_call(client, operation_name, api_params)
            service = client.meta.service_model.service_name
            operation = f"{service}.{operation_name}"
            if service == "sts" and operation_name == "GetCallerIdentity":
                return original_call(client, operation_name, api_params)  # needs no permission
            requests = requests_for(service, operation_name, api_params, enforcer.secrets)
            enforcer.check(principal, operation, requests)
            try:
                return original_call(client, operation_name, api_params)
            except ClientError as exc:
                # S3 answers a missing key with 404 only to a caller allowed s3:ListBucket; else 403.
                code = exc.response.get("Error", {}).get("Code")
                if service == "s3" and operation_name in ("GetObject", "HeadObject") and code in ("NoSuchKey", "404"):
                    listing = Request("s3:ListBucket", f"arn:{PARTITION}:s3:::{api_params['Bucket']}")
                    enforcer.check(principal, f"s3.{operation_name}", [listing])
                raise

        def generate_presigned_url(client: BaseClient, ClientMethod: str, Params: dict | None = None, **kw: Any) -> Any:
            principal = enforcer.principal
            if principal is not None:
                op = client.meta.method_to_api_mapping.get(ClientMethod, ClientMethod)
                service = client.meta.service_model.service_name
                # A presigned URL works only if its signer holds the permission when it is used.
                enforcer.check(
                    principal, f"{service}.{op} (presigned)", requests_for(service, op, Params or {}, enforcer.secrets)
                )
            return original_presign(client, ClientMethod, Params=Params, **kw)

        monkeypatch.setattr(BaseClient, "_make_api_call", _make_api_call)
        # botocore puts this function on each client class it creates: clients made from now on.
        monkeypatch.setattr(botocore.signers, "generate_presigned_url", generate_presigned_url)


def run_as(enforcer: Enforcer, principal: str | None, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with enforcer.acting_as(principal):
            return fn(*args, **kwargs)

    return wrapped


def as_json(policy: Policy) -> str:
    """The rendered policy as an IAM JSON document (for failure messages and the docs)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": s.sid,
                    "Effect": s.effect,
                    "Action": list(s.actions),
                    "Resource": list(s.resources),
                    **(
                        {"Condition": {c.operator: {c.key: list(c.values)} for c in s.conditions}}
                        if s.conditions
                        else {}
                    ),
                }
                for s in policy.statements
            ],
        },
        indent=1,
    )
