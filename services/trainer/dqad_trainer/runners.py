"""Where a training job runs: SageMaker Processing on AWS, a subprocess locally.

Both take the same :class:`JobSpec` and both end the same way: a "SageMaker Processing Job State
Change" event on the account's default bus, which the trainer's queue receives. The local runner
produces that event itself after the subprocess exits, so the completion path is the one AWS takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dqad.ports import ProgressCallback
from dqad.storage import Storage
from dqad.topology import SAGEMAKER_JOB_STATE

#: Where the local runner relays a job's progress (one step per candidate and validation fold):
#: None, except while the CLI pumps the trainer on the embedded runtime (dqad_dev.run.drive_chain),
#: which sets its terminal bar here, as it sets the fetcher's ``FETCH_PROGRESS``.
JOB_PROGRESS: ProgressCallback | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str  # <= 63 characters, carries the run id
    inputs: dict[str, str]  # channel -> S3 URI (file) ; channel "champion" may be absent
    output_uri: str  # S3 prefix the output directory is uploaded to
    environment: dict[str, str]
    instance_type: str | None = None  # the dataset's [trainer] instance_type; None: the deployment's default
    instance_count: int = 1


class SageMakerRunner:
    """Plain boto3 ``create_processing_job``: no SageMaker SDK inside a Lambda."""

    def __init__(self, sagemaker_client: Any, image_uri: str, role_arn: str, instance_type: str) -> None:
        self.sm = sagemaker_client
        self.image_uri = image_uri
        self.role_arn = role_arn
        self.instance_type = instance_type

    def request(self, spec: JobSpec) -> dict:
        inputs = [
            {
                "InputName": channel,
                "S3Input": {
                    "S3Uri": uri,
                    "LocalPath": f"/opt/ml/processing/input/{channel}",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
            for channel, uri in sorted(spec.inputs.items())
        ]
        return {
            "ProcessingJobName": spec.name,
            "ProcessingInputs": inputs,
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "model",
                        "S3Output": {
                            "S3Uri": spec.output_uri,
                            "LocalPath": "/opt/ml/processing/output",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": spec.instance_count,
                    "InstanceType": spec.instance_type or self.instance_type,
                    "VolumeSizeInGB": 30,
                }
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "AppSpecification": {
                "ImageUri": self.image_uri,
                "ContainerEntrypoint": ["python3", "-m", "dqad_trainer.job"],
            },
            "Environment": spec.environment,
            "RoleArn": self.role_arn,
            "Tags": [{"Key": "dqad:job", "Value": "train"}],
        }

    def start(self, spec: JobSpec) -> None:
        self.sm.create_processing_job(**self.request(spec))


class LocalRunner:
    """Runs the job script in a subprocess with the Processing directory contract on temp dirs."""

    def __init__(self, storage: Storage, events_client: Any) -> None:
        self.storage = storage
        self.events = events_client

    def start(self, spec: JobSpec) -> None:
        status, reason = "Completed", ""
        with tempfile.TemporaryDirectory(prefix="dqad-job-") as tmp:
            root = Path(tmp)
            for channel, uri in spec.inputs.items():
                # an S3Prefix input, as SageMaker copies it: every object under the prefix
                # (a sharded run's labelled parts sit under .../labeled/)
                if uri.endswith("/"):
                    files = [(source, source[len(uri) :]) for source in self.storage.list_uris(uri)]
                else:
                    files = [(uri, uri.rsplit("/", 1)[-1])]
                for source, name in files:
                    target = root / "input" / channel / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.storage.get_file(source, target)
            cmd = [sys.executable, "-m", "dqad_trainer.job", "--input", str(root / "input")]
            cmd += ["--output", str(root / "output")]
            returncode, stderr = run_job(cmd, {**_base_env(), **spec.environment}, JOB_PROGRESS)
            if returncode != 0:
                status, reason = "Failed", f"AlgorithmError: {stderr.strip()[-1500:]}"
            else:
                for path in sorted((root / "output").rglob("*")):
                    if path.is_file():
                        rel = path.relative_to(root / "output").as_posix()
                        # write-once, as a model version must be (dqad.storage.Storage.put_new)
                        self.storage.put_new(f"{spec.output_uri.rstrip('/')}/{rel}", path.read_bytes())
        self.events.put_events(Entries=[job_state_entry(spec.name, status, reason)])


def run_job(cmd: list[str], env: dict[str, str], progress: ProgressCallback | None) -> tuple[int, str]:
    """Run the job script to its end: (exit status, stderr). With ``progress``, relay its progress lines.

    The job writes them to the write end of a pipe named by ``DQAD_JOB_PROGRESS_FD``
    (dqad_trainer.job.progress_channel) and closes it when training ends; this process reads them as
    they come. stdout and stderr go to files meanwhile, so a chatty job can never block on a full pipe.
    """
    if progress is None or os.name != "posix":  # pass_fds is POSIX's
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        return done.returncode, done.stderr
    from dqad_trainer.job import PROGRESS_FD_ENV, relay_progress

    read_fd, write_fd = os.pipe()
    with tempfile.TemporaryFile("w+") as err:
        try:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err, text=True, pass_fds=(write_fd,),
                env={**env, PROGRESS_FD_ENV: str(write_fd)},
            )  # fmt: skip
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds the only write end: its exit (or close) ends the lines
        try:
            with open(read_fd, encoding="ascii", errors="replace") as lines:
                relay_progress(lines, progress)
        except BaseException:  # the bar failed or the user interrupted: the job must not outlive us
            proc.kill()
            proc.wait()
            raise
        returncode = proc.wait()
        err.seek(0)
        return returncode, err.read()


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DQAD_"))}


def job_state_entry(job_name: str, status: str, reason: str = "") -> dict:
    """A put_events entry shaped like SageMaker's own job-state event (default bus)."""
    detail = {
        "ProcessingJobName": job_name,
        "ProcessingJobStatus": status,
        "ProcessingEndTime": datetime.now(UTC).isoformat(),
    }
    if reason:
        detail["FailureReason"] = reason[:1024]
    return {"Source": "aws.sagemaker", "DetailType": SAGEMAKER_JOB_STATE, "Detail": json.dumps(detail)}
