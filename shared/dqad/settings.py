"""Runtime settings of a deployment, read from the environment when a handler runs.

Nothing that names a resource has a default: a Lambda deployed without ``DQAD_BUCKET`` fails on its
first message with an error naming the variable, instead of quietly writing to some default bucket.
Settings are read at call time (and cached per container by the handlers), never at import time,
so tests and the local runtime can point the same code at moto.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields


class SettingsError(RuntimeError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    bus_name: str
    bucket: str
    datasets_uri: str
    alerts_topic_arn: str = ""
    operator_topic_arn: str = ""
    idempotency_table: str = ""
    shards_table: str = ""  # labeler and scorer: the join of a sharded run's shards (dqad.shard_join)
    job_runner: str = "sagemaker"  # "sagemaker" on AWS; "local" runs the job script as a subprocess
    trainer_image_uri: str = ""
    trainer_instance_type: str = "ml.m5.xlarge"
    sagemaker_role_arn: str = ""
    feedback_secret_arn: str = ""
    model_signing_secret_arn: str = ""  # trainer and scorer: the HMAC key of model references
    feedback_url: str = ""
    outbox_dsn_secret_arn: str = ""
    load_log_uri: str = ""  # fetcher's freshness check, locally: a CSV of the ETL log instead of Aurora
    report_link_expiry_s: int = 7 * 24 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        missing = []
        for f in fields(cls):
            key = "DQAD_" + f.name.upper()
            if key in env and env[key] != "":
                raw = env[key]
                if f.type in ("int", int):
                    try:
                        values[f.name] = int(raw)
                    except ValueError:
                        raise SettingsError(f"{key} must be an integer, got {raw!r}") from None
                else:
                    values[f.name] = raw
            elif f.default is MISSING:  # no default: required
                missing.append(key)
        if missing:
            raise SettingsError(f"missing required environment variable(s): {', '.join(missing)}")
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.job_runner not in ("sagemaker", "local"):
            raise SettingsError(f"DQAD_JOB_RUNNER must be 'sagemaker' or 'local', got {settings.job_runner!r}")
        return settings

    def require(self, *names: str) -> None:
        """Fail with the variable's name when a stage needs a setting that is optional for others."""
        missing = ["DQAD_" + n.upper() for n in names if not getattr(self, n)]
        if missing:
            raise SettingsError(f"missing required environment variable(s): {', '.join(missing)}")

    def to_env(self) -> dict[str, str]:
        return {"DQAD_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
