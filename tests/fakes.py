"""In-memory fakes of the ports in :mod:`dqad.ports`, for unit tests of domain logic without AWS.

Each fake keeps what it was given where a test can read it (``objects``, ``events``, ``parked``,
``started``). ``tests/unit/core/test_ports_contract.py`` runs the same assertions on each fake and on
its adapter over moto, so a fake that starts to behave differently from AWS fails there first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dqad.bus import envelope, event_key
from dqad.contract import EventDetail
from dqad.datasets import DatasetCatalog
from dqad.ports import DeadLetter, JobSpecification, NoDeadLetterQueue
from dqad.settings import Settings
from dqad.stage import Clients, StageRuntime
from dqad.storage import IntegrityError, Storage, parse_uri, sha256_bytes
from dqad.topology import source_of

BUCKET = "fake-bucket"


class MemoryStorage(Storage):
    """:class:`dqad.storage.Storage` on a dict: only the byte primitives are replaced, so JSON, Parquet,
    sha256 checks and row counts are the real code."""

    def __init__(self, bucket: str = BUCKET) -> None:
        super().__init__(s3_client=None, bucket=bucket)
        self.objects: dict[str, bytes] = {}  # normalised URI -> bytes

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[parse_uri(uri).uri] = bytes(data)
        return sha256_bytes(data)

    def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        key = parse_uri(uri).uri
        if key not in self.objects:
            raise FileNotFoundError(f"{uri}: no such object")
        data = self.objects[key]
        if sha256 is not None and sha256_bytes(data) != sha256:
            raise IntegrityError(f"{uri}: sha256 {sha256_bytes(data)} does not match expected {sha256}")
        return data

    def put_file(self, uri: str, path: str | Path) -> None:
        self.put_bytes(uri, Path(path).read_bytes())

    def get_file(self, uri: str, path: str | Path) -> None:
        Path(path).write_bytes(self.get_bytes(uri))

    def exists(self, uri: str) -> bool:
        return parse_uri(uri).uri in self.objects

    def list_uris(self, prefix_uri: str) -> Iterator[str]:
        prefix = parse_uri(prefix_uri).uri
        yield from sorted(u for u in self.objects if u.startswith(prefix))

    def presign(self, uri: str, expires_s: int) -> str:
        return f"{parse_uri(uri).uri}?expires={expires_s}"


@dataclass
class MemoryPublisher:
    """:class:`dqad.bus.EventPublisher` without EventBridge: archives the envelope like the real one,
    then keeps the event in ``events`` (what the bus would have delivered)."""

    storage: Storage
    stage: str
    events: list[EventDetail] = field(default_factory=list)

    def publish(self, detail: EventDetail) -> str:
        uri = self.storage.uri(event_key(detail.run_id, detail.detail_type, getattr(detail, "stage", None)))
        self.storage.put_json(uri, envelope(detail, source_of(self.stage)))
        self.events.append(detail)
        return uri


@dataclass
class MemoryDeadLetters:
    """DLQs per source queue ARN; a source without one is refused, as :class:`SqsDeadLetters` refuses."""

    with_dlq: set[str] = field(default_factory=set)
    parked: dict[str, list[DeadLetter]] = field(default_factory=dict)

    def park(self, source_arn: str, letter: DeadLetter) -> None:
        if source_arn not in self.with_dlq:
            raise NoDeadLetterQueue(f"queue {source_arn} has no DLQ configured; refusing to drop a record")
        self.parked.setdefault(source_arn, []).append(letter)


@dataclass
class MemoryJobRunner:
    """Records the jobs started; refuses a name already used, as SageMaker does."""

    started: list[JobSpecification] = field(default_factory=list)

    def start(self, spec: JobSpecification) -> None:
        if any(s.name == spec.name for s in self.started):
            raise ValueError(f"a job named {spec.name} already exists")
        self.started.append(spec)


#: The model-signing secret of every fake runtime, and the one key it holds.
MODEL_SIGNING_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dqad-fake-model-signing"
MODEL_SIGNING_KEY = b"fake-model-signing-key-for-unit-tests"


@dataclass
class MemorySecrets:
    """Secrets Manager's ``get_secret_value`` on a dict; an unknown secret fails as AWS's would."""

    values: dict[str, str] = field(default_factory=lambda: {MODEL_SIGNING_SECRET_ARN: MODEL_SIGNING_KEY.decode()})

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        if SecretId not in self.values:
            raise KeyError(f"ResourceNotFoundException: secret {SecretId} not found")
        return {"SecretString": self.values[SecretId]}


class NoAWS:
    """A botocore session stand-in: a unit test that reaches for an AWS client fails, naming it, except
    Secrets Manager, which the fakes hold (:class:`MemorySecrets`)."""

    def __init__(self) -> None:
        self.secrets = MemorySecrets()

    def create_client(self, service: str, **_: object) -> MemorySecrets:
        if service == "secretsmanager":
            return self.secrets
        raise AssertionError(f"unit test asked for an AWS {service} client: use a fake from tests/fakes.py")


def fake_runtime(stage: str, catalog: DatasetCatalog | str | None = None) -> StageRuntime:
    """A :class:`StageRuntime` on the fakes. ``catalog``: TOML text stored where the settings point, or a
    parsed catalog used as is."""
    storage = MemoryStorage()
    settings = Settings(
        bus_name="dqad-fake",
        bucket=BUCKET,
        datasets_uri=storage.uri("config/datasets.toml"),
        model_signing_secret_arn=MODEL_SIGNING_SECRET_ARN,
    )
    rt = StageRuntime(
        stage,
        settings,
        storage,
        MemoryPublisher(storage, stage),
        Clients(session=NoAWS()),
        _dead_letters=MemoryDeadLetters(),
    )
    if isinstance(catalog, str):
        storage.put_bytes(settings.datasets_uri, catalog.encode())
    elif catalog is not None:
        rt._catalog = (catalog, float("inf"))  # never re-read: there is no file behind it
    return rt

