"""Human feedback: "this point is (not) an anomaly", stored under ``labels/<dataset>/``.

One JSON object per (series, timestamp), at a key derived from both, so a later verdict on the
same point replaces the earlier one and a double click writes the same object twice. The labeler
reads them all on every run: human feedback overrides every automatic rule.

Writing a label is plain Python (:mod:`datetime`): the notifier's feedback page writes labels and
ships without pandas. Reading them all back as a frame (:func:`read_labels`, the labeler's and the
trainer's) imports pandas where it runs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from dqad.ports import ObjectStore
from dqad.storage import AlreadyExists

if TYPE_CHECKING:
    import pandas as pd

    from dqad.storage import Storage

Label = Literal["normal", "anomaly"]
COLUMNS = ("series", "timestamp", "label", "note", "by", "at")


def utc_naive(timestamp: datetime | str) -> datetime:
    """A point's load time as naive UTC: an aware time converted, an ISO 8601 string parsed.

    A ``pandas.Timestamp`` is a :class:`datetime` and keeps its nanoseconds, so keys written from
    frames and from email links agree.
    """
    if isinstance(timestamp, str):
        try:
            timestamp = datetime.fromisoformat(timestamp)
        except ValueError:
            raise ValueError(f"timestamp {timestamp!r} is not ISO 8601 (use e.g. 2026-11-02T02:16:07)") from None
    return timestamp.astimezone(UTC).replace(tzinfo=None) if timestamp.tzinfo else timestamp


def label_key(dataset: str, series: str, timestamp: datetime | str) -> str:
    ts = utc_naive(timestamp)
    digest = hashlib.sha256(f"{series}\x1f{ts.isoformat()}".encode()).hexdigest()[:20]
    return f"labels/{dataset}/{digest}.json"


def write_label(
    storage: ObjectStore, dataset: str, series: str, timestamp: datetime | str, label: str, note: str = "", by: str = ""
) -> str:
    """Store one verdict; ``label`` must be one of :data:`Label` (a link's or a command line's text)."""
    if label not in ("normal", "anomaly"):
        raise ValueError(f"label must be 'normal' or 'anomaly', got {label!r}")
    ts = utc_naive(timestamp)
    uri = storage.uri(label_key(dataset, series, ts))
    storage.put_json(
        uri,
        {
            "series": series,
            "timestamp": ts.isoformat(),
            "label": label,
            "note": note[:1000],
            "by": by[:200],
            "at": datetime.now(UTC).isoformat(),
        },
    )
    return uri


# Where the uses of feedback links are recorded: outside labels/<dataset>/ (dataset names start with
# a letter), inside labels/ so that the feedback function's one write grant covers it.
LINK_USES_PREFIX = "labels/.uses"


def link_use_key(dataset: str, signature: str) -> str:
    return f"{LINK_USES_PREFIX}/{dataset}/{hashlib.sha256(signature.encode()).hexdigest()[:32]}.json"


def record_first_use(storage: Storage, dataset: str, signature: str, detail: dict[str, str]) -> bool:
    """Record that a link was used; False when it had been used before (the record is write-once).

    A link is a credential sitting in a mailbox: used once, it is spent, and a second use (a
    forwarded mail, a replayed request) is told so instead of silently recording again.
    """
    body = json.dumps({**detail, "at": datetime.now(UTC).isoformat()}).encode()
    try:
        storage.put_new(storage.uri(link_use_key(dataset, signature)), body, "application/json")
    except AlreadyExists:
        return False
    return True


def read_labels(storage: ObjectStore, dataset: str) -> pd.DataFrame:
    import pandas as pd

    rows = [storage.get_json(uri) for uri in storage.list_uris(storage.uri(f"labels/{dataset}/"))]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:
        return frame
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[ns]")
    return frame.sort_values("at").drop_duplicates(["series", "timestamp"], keep="last").reset_index(drop=True)


def fingerprint(labels: pd.DataFrame) -> str:
    """Changes whenever a human label is added or changed: the trainer retrains on new feedback."""
    if labels.empty:
        return ""
    keyed = labels[["series", "timestamp", "label"]].astype(str).sort_values(["series", "timestamp"])
    return hashlib.sha256(keyed.to_csv(index=False).encode()).hexdigest()[:16]
