"""What every SQS-fed stage handler shares: parse, run the domain step, publish, fail safely.

A handler is three lines: build the :class:`StageRuntime` (cached per container), and hand the
batch to :func:`run_batch` with the stage's record function. This module decides what happens to
a record that cannot be processed, the same way for every stage:

* **contract error** (malformed JSON, missing field, unknown version): the record is not retried
  (it would fail identically); it is copied to the stage's DLQ with the reason as a message
  attribute and acknowledged. The rest of the batch goes on.
* **permanent domain error** (:class:`PermanentError`: schema mismatch, integrity failure, bad
  configuration): a ``StageFailed`` event is published (so the operator is told and the run ends
  visibly), the record goes to the DLQ with the reason, and is acknowledged.
* **anything else** (throttling, timeouts, a killed worker): the record is reported in
  ``batchItemFailures`` and SQS redelivers it; stages are idempotent, so a retry is safe. On its
  last allowed attempt a ``StageFailed`` is published first, so that even a run that ends in the
  DLQ through redrive is never silent.

Cold start (docs/architecture.md §9): this module is imported by every handler, so it imports only what every
entry point uses. Powertools' batch utility (which pulls asyncio and every event data class) is
imported inside :func:`run_batch`, the one place that uses it, so the fetcher's Aurora and sweeper
entry points and the feedback page never load it; the dataset catalog and storage modules import
pandas / pyarrow only where they build frames or Parquet (see :mod:`dqad.datasets`,
:mod:`dqad.storage`).
"""

from __future__ import annotations

import functools
import json
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

import botocore.session
from aws_lambda_powertools import Logger

from dqad.bus import EventPublisher, event_key, shard_of
from dqad.contract import ContractError, EventDetail, StageFailed, parse_event
from dqad.datasets import DatasetCatalog, load_catalog
from dqad.ports import DeadLetter, DeadLetters, EventPublishing, SqsDeadLetters
from dqad.settings import Settings
from dqad.storage import Storage
from dqad.topology import MAX_RECEIVE_COUNT, stage

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = Logger(service="dqad")


CATALOG_TTL_S = 60.0


class PermanentError(Exception):
    """Retrying cannot help (bad data, bad configuration, integrity failure)."""


_URL_CREDENTIALS = re.compile(r"([a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@]+@")
_KEY_VALUE_SECRETS = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|sslpassword|aws_secret_access_key)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,;&]+)"
)


def redact(text: str) -> str:
    """The text with credentials masked: a malformed DSN echoed by a driver must not reach the
    operator's email, events/ or the logs (user:password@ in URLs, password=... in key-value DSNs)."""
    return _KEY_VALUE_SECRETS.sub(r"\1\2***", _URL_CREDENTIALS.sub(r"\1***@", text))


def _redacted_traceback() -> str:
    return redact(traceback.format_exc())


@dataclass
class StageRuntime:
    """Adapters one stage needs, built once per container from the settings."""

    stage: str
    settings: Settings
    storage: Storage
    publisher: EventPublishing
    clients: Clients
    _catalog: tuple[DatasetCatalog, float] | None = field(default=None, repr=False)
    _dead_letters: DeadLetters | None = field(default=None, repr=False)

    @property
    def dead_letters(self) -> DeadLetters:
        """Where unprocessable records go: the source queue's DLQ unless a fake was given."""
        if self._dead_letters is None:
            self._dead_letters = SqsDeadLetters(self.clients("sqs"))
        return self._dead_letters

    @property
    def catalog(self) -> DatasetCatalog:
        """The dataset catalog, re-read at most every :data:`CATALOG_TTL_S` seconds.

        A warm container must not keep a configuration the operator has since fixed: the documented
        recovery is "fix the file, then redrive the DLQ", and a catalog cached for the container's
        lifetime made the redriven records fail again. After a permanent failure the catalog is
        dropped at once (:meth:`forget_catalog`), so the next record reads the current file.
        """
        now = time.monotonic()
        if self._catalog is None or now - self._catalog[1] > CATALOG_TTL_S:
            self._catalog = (load_catalog(self.storage, self.settings.datasets_uri), now)
        return self._catalog[0]

    def forget_catalog(self) -> None:
        self._catalog = None

    def run_prefix(self, dataset: str, run_id: str) -> str:
        return self.storage.uri(f"runs/{dataset}/{run_id}")


class Clients:
    """AWS clients, created on first use: a handler that never calls SNS never pays for it.

    They are botocore clients (what boto3's ``client()`` returns too) made from a botocore session:
    importing boto3 also imports s3transfer and multiprocessing, about a tenth of a second of every
    cold start, for the managed transfers only :meth:`dqad.storage.Storage.put_file` / ``get_file``
    use, and those import them where they run.
    """

    def __init__(self, session: Any = None) -> None:
        self._session = session or botocore.session.Session()
        self._cache: dict[str, Any] = {}

    def credentials(self) -> Any:
        """The credentials the clients sign with (what a presigned URL's lifetime depends on)."""
        return self._session.get_credentials()

    def __call__(self, service: str) -> Any:
        if service not in self._cache:
            self._cache[service] = self._session.create_client(service)
        return self._cache[service]


@functools.lru_cache(maxsize=8)
def _runtime_for(stage_name: str, settings: Settings) -> StageRuntime:
    clients = Clients()
    storage = Storage(clients("s3"), settings.bucket)
    publisher = EventPublisher(clients("events"), settings.bus_name, storage, stage_name)
    return StageRuntime(stage_name, settings, storage, publisher, clients)


def runtime(stage_name: str, settings: Settings | None = None) -> StageRuntime:
    """The stage's runtime for the current settings (cached per container, keyed by settings)."""
    return _runtime_for(stage(stage_name).name, settings or Settings.from_env())


# -- dead letters ------------------------------------------------------------------------------------
def dead_letter(rt: StageRuntime, record: SQSRecord, error_type: str, reason: str) -> None:
    """Park a record in the DLQ with why it failed, so an operator can read, fix and redrive it."""
    rt.dead_letters.park(
        record.event_source_arn,
        DeadLetter(record.body, error_type, redact(reason), rt.stage, record.message_id),
    )
    logger.warning("record sent to DLQ", extra={"error_type": error_type, "reason": redact(reason)[:500]})


def publish_failure(rt: StageRuntime, detail: EventDetail, exc: BaseException) -> None:
    """Tell the operator (via the notifier) that this run failed at this stage.

    A failure while handling a StageFailed is not reported with another StageFailed: that would
    loop for as long as the cause lasts (e.g. SNS down). The record ends in the DLQ, whose alarm
    is the signal.
    """
    if isinstance(detail, StageFailed):
        logger.error("could not deliver a StageFailed; leaving it to the DLQ alarm", extra={"run_id": detail.run_id})
        return
    shard = shard_of(detail)
    stored_input = rt.storage.uri(
        event_key(detail.run_id, detail.detail_type, getattr(detail, "stage", None), shard)
    )
    message = redact(str(exc)) or type(exc).__name__
    count = getattr(getattr(detail, "shard", None), "count", None)
    if shard is not None:
        message = f"shard {shard} of {count}: {message}"
    rt.publisher.publish(
        StageFailed(
            run_id=detail.run_id,
            dataset=detail.dataset,
            stage=rt.stage,  # type: ignore[arg-type]
            error_type=type(exc).__name__,
            message=message,
            input_event=stored_input,
            shard=shard,
        )
    )


D = TypeVar("D", bound=EventDetail)
# A stage's record function: one parsed event of a type the stage consumes; what it returns is ignored.
RecordFn = Callable[[StageRuntime, D], object]


def run_batch(
    event: dict,
    context: Any,
    rt: StageRuntime,
    handle: RecordFn[D],
    raw_routes: dict[str, Callable[[StageRuntime, dict], object]] | None = None,
) -> dict:
    """Process an SQS batch with partial-failure reporting (Lambda's ReportBatchItemFailures).

    ``raw_routes`` handles non-contract events by detail-type (e.g. SageMaker job-state changes).
    """
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    consumes = tuple(t for t in stage(rt.stage).consumes if not raw_routes or t not in raw_routes)

    def record_handler(record: SQSRecord) -> None:
        body = record.body
        if raw_routes:
            try:
                raw = json.loads(body)
            except json.JSONDecodeError:
                raw = None
            if isinstance(raw, dict) and raw.get("detail-type") in raw_routes:
                raw_routes[raw["detail-type"]](rt, raw)
                return
        try:
            detail = parse_event(body, expected=consumes)
        except ContractError as exc:
            dead_letter(rt, record, "ContractError", str(exc))
            return
        try:
            # parse_event accepted only the detail-types this stage consumes, which are D's.
            handle(rt, cast(D, detail))
        except PermanentError as exc:
            logger.error("permanent failure", extra={"run_id": detail.run_id, "traceback": _redacted_traceback()})
            rt.forget_catalog()  # the cause may be the configuration: the redrive must see the fixed file
            publish_failure(rt, detail, exc)
            dead_letter(rt, record, type(exc).__name__, str(exc))
        except Exception as exc:
            attempts = int(record.attributes.approximate_receive_count or 1)
            logger.error(
                "failure, will retry",
                extra={"run_id": detail.run_id, "attempt": attempts, "traceback": _redacted_traceback()},
            )
            if attempts >= MAX_RECEIVE_COUNT:
                publish_failure(rt, detail, exc)
            raise

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    )
