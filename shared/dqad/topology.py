"""The one description of how dqad's stages are wired together.

The local runtime provisions exactly this on moto, and the Terraform consistency test checks the
modules in ``terraform/`` against it, so what passes locally is the shape that is deployed.

Names are derived from a *prefix* (``dqad-<env>`` by default; organisations may use their own
naming such as ``acme-data-AnomalyDetection-prod``), so nothing here names a real resource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# EventBridge detail-types of the contract (docs/architecture.md §4), in chain order.
LOAD_COMPLETED = "LoadCompleted"
DATASET_FETCHED = "DatasetFetched"
DATASET_LABELED = "DatasetLabeled"
MODEL_TRAINED = "ModelTrained"
ANOMALIES_SCORED = "AnomaliesScored"
NOTIFICATION_SENT = "NotificationSent"
STAGE_FAILED = "StageFailed"
LOAD_LOG_CHECKED = "LoadLogChecked"  # what the ETL log alone says: late, missing, arrived, empty loads

# SageMaker's own event, delivered on the account's *default* bus.
SAGEMAKER_JOB_STATE = "SageMaker Processing Job State Change"
SAGEMAKER_JOB_PREFIX = "dqad-train-"

STAGE_NAMES = ("fetcher", "labeler", "trainer", "scorer", "notifier")


def source_of(stage: str) -> str:
    """EventBridge ``source`` used by a stage's events."""
    return f"dqad.{stage}"


@dataclass(frozen=True)
class Rule:
    """One EventBridge rule that targets the owning stage's queue."""

    suffix: str
    pattern: dict[str, Any]
    on_default_bus: bool = False

    def pattern_json(self) -> str:
        return json.dumps(self.pattern, sort_keys=True)


@dataclass(frozen=True)
class Stage:
    """A deployable service: its queue-fed handler, what it consumes and what it emits."""

    name: str
    handler: str  # "module:function" of the SQS-fed Lambda handler
    consumes: tuple[str, ...]
    emits: tuple[str, ...]
    rules: tuple[Rule, ...]
    extra_entry_points: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return source_of(self.name)


def _bus_rule(*detail_types: str, sources: tuple[str, ...]) -> Rule:
    return Rule(
        suffix="",
        pattern={"source": sorted(sources), "detail-type": sorted(detail_types)},
    )


ALL_SOURCES = tuple(source_of(s) for s in STAGE_NAMES)

STAGES: tuple[Stage, ...] = (
    Stage(
        name="fetcher",
        handler="dqad_fetcher.handler:lambda_handler",
        consumes=(LOAD_COMPLETED,),
        emits=(LOAD_COMPLETED, DATASET_FETCHED, STAGE_FAILED, LOAD_LOG_CHECKED),
        rules=(_bus_rule(LOAD_COMPLETED, sources=(source_of("fetcher"),)),),
        extra_entry_points={
            "aurora": "dqad_fetcher.handler:aurora_handler",
            "sweeper": "dqad_fetcher.handler:sweeper_handler",
            "freshness": "dqad_fetcher.handler:freshness_check",
        },
    ),
    Stage(
        name="labeler",
        handler="dqad_labeler.handler:lambda_handler",
        consumes=(DATASET_FETCHED,),
        emits=(DATASET_LABELED, STAGE_FAILED),
        rules=(_bus_rule(DATASET_FETCHED, sources=(source_of("fetcher"),)),),
    ),
    Stage(
        name="trainer",
        handler="dqad_trainer.handler:lambda_handler",
        consumes=(DATASET_LABELED, SAGEMAKER_JOB_STATE),
        emits=(MODEL_TRAINED, STAGE_FAILED),
        rules=(
            _bus_rule(DATASET_LABELED, sources=(source_of("labeler"),)),
            Rule(
                suffix="-sagemaker",
                on_default_bus=True,
                pattern={
                    "source": ["aws.sagemaker"],
                    "detail-type": [SAGEMAKER_JOB_STATE],
                    "detail": {
                        "ProcessingJobName": [{"prefix": SAGEMAKER_JOB_PREFIX}],
                        "ProcessingJobStatus": ["Completed", "Failed", "Stopped"],
                    },
                },
            ),
        ),
    ),
    Stage(
        name="scorer",
        handler="dqad_scorer.handler:lambda_handler",
        consumes=(MODEL_TRAINED,),
        emits=(ANOMALIES_SCORED, STAGE_FAILED),
        rules=(_bus_rule(MODEL_TRAINED, sources=(source_of("trainer"),)),),
    ),
    Stage(
        name="notifier",
        handler="dqad_notifier.handler:lambda_handler",
        consumes=(ANOMALIES_SCORED, STAGE_FAILED, LOAD_LOG_CHECKED),
        emits=(NOTIFICATION_SENT,),
        rules=(
            _bus_rule(ANOMALIES_SCORED, STAGE_FAILED, sources=ALL_SOURCES),
            Rule(
                suffix="-loadlog",
                pattern={"source": [source_of("fetcher")], "detail-type": [LOAD_LOG_CHECKED]},
            ),
        ),
        extra_entry_points={"feedback": "dqad_notifier.handler:feedback_handler"},
    ),
)

STAGES_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; expected one of {', '.join(STAGE_NAMES)}") from None


def consumer_of(detail_type: str) -> Stage:
    """The stage whose queue receives events of this detail-type (StageFailed goes to the notifier)."""
    for s in STAGES:
        if detail_type in s.consumes:
            return s
    raise ValueError(f"no stage consumes {detail_type!r}")


@dataclass(frozen=True)
class Names:
    """Resource names for one deployment, all derived from one prefix."""

    prefix: str

    @property
    def bus(self) -> str:
        return self.prefix

    @property
    def archive(self) -> str:
        return f"{self.prefix}-archive"

    @property
    def alerts_topic(self) -> str:
        return f"{self.prefix}-alerts"

    @property
    def operator_topic(self) -> str:
        return f"{self.prefix}-operator"

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-idempotency"

    @property
    def shards_table(self) -> str:
        return f"{self.prefix}-shards"

    def queue(self, stage_name: str) -> str:
        return f"{self.prefix}-{stage_name}"

    def dlq(self, stage_name: str) -> str:
        return f"{self.prefix}-{stage_name}-dlq"

    def rule(self, stage_name: str, rule: Rule) -> str:
        return f"{self.prefix}-{stage_name}{rule.suffix}"

    def function(self, stage_name: str, entry: str = "") -> str:
        return f"{self.prefix}-{stage_name}{'-' + entry if entry else ''}"


# Retry behaviour shared by Terraform and the local runtime.
MAX_RECEIVE_COUNT = 3
VISIBILITY_TIMEOUT_S = 900  # >= the longest Lambda timeout (15 min), as AWS recommends for SQS sources
