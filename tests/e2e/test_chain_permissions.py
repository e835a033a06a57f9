"""The chain passes with every AWS request evaluated against the role Terraform gives its caller,
and each grant is needed: without it, the stage that uses it fails (docs/security.md, "How
permissions are enforced in the tests").

The chain runs once per test module (tests/e2e/iam_chain.py records each invocation with its input
and starting state); the grant-removal cases replay only the invocation a grant matters to, under
the policy without that grant.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dqad.feedback import read_labels
from dqad.storage import Storage
from tests.e2e.iam_chain import Recorded, recorded_chain
from tests.iam_enforce import SAGEMAKER_JOB, Deployed, role_policies
from tests.iam_policy import Policy
from tests.terraform import tfkit

# One worker runs the whole module (make test: --dist loadgroup), so the chain is recorded once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("iam_chain")]


@pytest.fixture(scope="module")
def chain() -> Iterator[Recorded]:
    with recorded_chain() as rec:
        yield rec


def test_the_chain_runs_to_the_email_under_the_deployed_roles(chain: Recorded) -> None:
    assert not chain.enforcer.denials(), [str(e.request) for e in chain.enforcer.denials()]
    assert chain.notification is not None and chain.run_id in chain.notification["Subject"]
    storage = Storage(chain.cloud.client("s3"), chain.cloud.dep.bucket)
    logged = {u.rsplit("/", 1)[-1] for u in storage.list_uris(storage.uri(f"events/{chain.run_id}/"))}
    assert "NotificationSent.json" in logged and not any("StageFailed" in k for k in logged), logged
    # every principal acted, each under its own role
    acted = {e.principal for e in chain.enforcer.log}
    assert acted == {"fetcher", "labeler", "trainer", "scorer", "notifier", "notifier-feedback", SAGEMAKER_JOB,
                     "fetcher-freshness-schedule", "fetcher-aurora-invoke"}  # fmt: skip
    # the feedback link of the email: confirmation page, then the label recorded by the feedback role
    assert chain.feedback_statuses == [200, 200, 409]  # the second use of a link records nothing
    labels = read_labels(storage, "demo_dq")
    assert sorted(labels["note"]) == ["planned", "seeded"], labels


def test_the_freshness_check_and_the_channel_run_under_their_roles(chain: Recorded) -> None:
    """The scheduled freshness check (invoked by its schedule's role, run as the fetcher) reads the
    ETL log under sources/ and keeps its state under freshness/; the notifier mails its
    LoadLogChecked, and delivers the run's alert to the Slack channel whose URL is in a secret."""
    assert chain.freshness["missing"] and chain.freshness["runs"], chain.freshness
    mail = chain.freshness_notification
    assert mail is not None and "missing" in mail["Subject"], mail
    assert [path for path, _ in chain.webhook_posts] == ["/slack"], chain.webhook_posts
    storage = Storage(chain.cloud.client("s3"), chain.cloud.dep.bucket)
    assert storage.exists(storage.uri(f"alerts/demo_dq/deliveries/{chain.run_id}/dq-slack.json"))
    allowed = {(e.principal, e.request.action, e.result.matched) for e in chain.enforcer.log if e.result.allowed}
    sids = {(p, a, s) for p, a, matched in allowed for s in matched}
    assert {
        ("fetcher-freshness-schedule", "lambda:InvokeFunction", "freshness_schedule:InvokeFreshnessCheck"),
        ("fetcher-aurora-invoke", "lambda:InvokeFunction", "aurora_invoke:InvokeFetcherAuroraEntry"),
        ("fetcher", "s3:PutObject", "stage:FreshnessState"),
        ("notifier", "secretsmanager:GetSecretValue", "stage:ChannelSecrets"),
    } <= sids, sorted(sids)


def test_each_request_was_decided_by_the_roles_own_statements(chain: Recorded) -> None:
    """The requests the chain made, as the evaluator saw them: e.g. the scorer's ModelTrained never
    came from any role but the trainer's, and the SageMaker job never wrote a champion pointer."""
    puts = {
        (e.principal, e.request.context.get("events:source"))
        for e in chain.enforcer.log
        if e.request.action == "events:PutEvents"
    }
    assert puts == {(s, f"dqad.{s}") for s in ("fetcher", "labeler", "trainer", "scorer", "notifier")}
    job_writes = [
        e.request.resource
        for e in chain.enforcer.log
        if e.principal == SAGEMAKER_JOB and e.request.action == "s3:PutObject"
    ]
    assert job_writes and all("/models/demo_dq/v" in r for r in job_writes), job_writes
    assert not any(r.endswith("champion.json") for r in job_writes)
    kinds = {(e.principal, e.request.action) for e in chain.enforcer.log}
    assert {("trainer", "sagemaker:CreateProcessingJob"), ("trainer", "iam:PassRole"), ("notifier", "sns:Publish"),
            ("scorer", "secretsmanager:GetSecretValue"), ("notifier", "sqs:ReceiveMessage")} <= kinds  # fmt: skip


def test_the_enforcer_refuses_what_a_role_does_not_grant(chain: Recorded) -> None:
    """The same hook, on a request the scorer's role does not grant: AccessDenied, as AWS answers."""
    from botocore.exceptions import ClientError

    s3 = chain.cloud.client("s3")
    with chain.enforcer.acting_as("scorer"), pytest.raises(ClientError) as err:
        s3.put_object(Bucket=chain.cloud.dep.bucket, Key="models/demo_dq/champion.json", Body=b"{}")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    with chain.enforcer.acting_as("labeler"), pytest.raises(ClientError) as err:
        chain.cloud.client("events").put_events(
            Entries=[
                {
                    "Source": "dqad.trainer",
                    "DetailType": "ModelTrained",
                    "Detail": "{}",
                    "EventBusName": chain.cloud.dep.names.bus,
                }
            ]
        )
    assert err.value.response["Error"]["Code"] == "AccessDeniedException"
    # a missing key: 404 only with s3:ListBucket; the feedback role has none, so 403
    with chain.enforcer.acting_as("notifier-feedback"), pytest.raises(ClientError) as err:
        s3.head_object(Bucket=chain.cloud.dep.bucket, Key="labels/none")
    assert err.value.response["Error"]["Code"] == "403"


# --- grant removal ----------------------------------------------------------------------------------
_PLACEHOLDER = Deployed(
    "dqad-iam",
    "dqad-iam-bucket",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:y",
)


def _grants() -> list[tuple[str, str, str]]:
    return [
        (principal, st.sid, action)
        for principal, policy in role_policies(_PLACEHOLDER).items()
        for st in policy.statements
        if st.effect == "Allow"
        for action in st.actions
    ]


def _unexercised_reasons(principal: str) -> dict[str, str]:
    """Why a granted action may be absent from the chain: AWS uses it on the role's behalf
    ("platform" in terraform/iam_actions.json), or the code calls it only in a configuration the
    chain does not run ("elsewhere")."""
    declared = tfkit.iam_declared()
    if principal in declared["stages"]:
        sections = [declared["common"], declared["stages"][principal]]
    else:
        sections = [declared["roles"][principal]]
    out: dict[str, str] = {}
    for section in sections:
        out.update(section.get("platform", {}))
        out.update(section.get("elsewhere", {}))
    return out


@pytest.mark.parametrize(("principal", "sid", "action"), _grants(), ids=lambda v: v)
def test_removing_a_grant_fails_the_stage_that_uses_it(chain: Recorded, principal: str, sid: str, action: str) -> None:
    full: Policy = chain.enforcer.policies[principal]
    reduced = full.without(sid, action)
    # Only the requests that statement allowed can change (an Allow removed never denies others).
    affected = [
        inv
        for inv in chain.invocations
        if any(
            e.principal == principal and sid in e.result.matched and not reduced.evaluate(e.request).allowed
            for e in inv.requests
        )
    ]
    if not affected:
        reasons = _unexercised_reasons(principal)
        assert action in reasons, (
            f"{principal}: {sid} grants {action}, which no request of the chain needed: remove the grant, or say in "
            "terraform/iam_actions.json why AWS needs it (platform) or which configuration calls it (elsewhere)"
        )
        return
    inv = min(affected, key=lambda i: i.seconds)  # any invocation of the role shows it; the quickest
    before = len(chain.enforcer.log)
    outcome = chain.replay(inv, {principal: reduced})
    denied = [e for e in chain.enforcer.log[before:] if not e.result.allowed]
    assert denied, f"replaying {inv.kind} without {sid}:{action} made no denied request"
    assert outcome != inv.outcome, (
        f"{inv.kind} without {sid}:{action} was denied {denied[0].request} and still ended as before: {outcome}"
    )


def test_a_replay_with_the_full_policies_ends_as_recorded(chain: Recorded) -> None:
    """The control of the grant-removal cases: the replay itself changes nothing."""
    for inv in chain.invocations:
        assert chain.replay(inv) == inv.outcome, inv.kind


def test_elsewhere_names_only_actions_the_code_calls() -> None:
    """'elsewhere' excuses a grant the chain does not reach only for code that calls it."""
    declared = tfkit.iam_declared()
    for name, section in declared["stages"].items():
        code = {**declared["common"]["code"], **section["code"]}
        assert set(section.get("elsewhere", {})) <= set(code), name
    for name, section in declared["roles"].items():
        assert not section.get("elsewhere"), name
        granted = {a for st in role_policies(_PLACEHOLDER)[name].statements for a in st.actions}
        assert granted == set(section["code"]) | set(section["platform"]), name
