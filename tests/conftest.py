"""Fixtures shared by the whole suite: fake AWS credentials, moto, the embedded deployment."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dqad.storage import Storage
from dqad_dev.local import LocalCloud

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that can only ever reach moto."""
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)


@pytest.fixture
def cloud(aws_env: None) -> Iterator[LocalCloud]:
    """The embedded deployment (moto in-process) provisioned from dqad.topology."""
    with LocalCloud("dqad-test") as c:
        yield c


@pytest.fixture
def storage(cloud: LocalCloud) -> Storage:
    return Storage(cloud.client("s3"), cloud.dep.bucket)
