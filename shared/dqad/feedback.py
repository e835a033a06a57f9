"""Human feedback: "this point is (not) an anomaly", stored under ``labels/<dataset>/``.

One JSON object per (series, timestamp), at a key derived from both, so a later verdict on the
same point replaces the earlier one and a double click writes the same object twice. The labeler
reads them all on every run: human feedback overrides every automatic rule.

pandas is imported inside the functions: the notifier's feedback page imports this module to write
one label, and its Lambda's cold start should not pay for pandas before a request needs it (docs/architecture.md §9).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from dqad.storage import Storage

if TYPE_CHECKING:
    import pandas as pd

Label = Literal["normal", "anomaly"]
COLUMNS = ("series", "timestamp", "label", "note", "by", "at")


def label_key(dataset: str, series: str, timestamp: datetime | str) -> str:
    import pandas as pd

    ts = pd.Timestamp(timestamp)
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
    digest = hashlib.sha256(f"{series}\x1f{ts.isoformat()}".encode()).hexdigest()[:20]
    return f"labels/{dataset}/{digest}.json"


def write_label(
    storage: Storage, dataset: str, series: str, timestamp: datetime | str, label: Label, note: str = "", by: str = ""
) -> str:
    if label not in ("normal", "anomaly"):
        raise ValueError(f"label must be 'normal' or 'anomaly', got {label!r}")
    import pandas as pd

    ts = pd.Timestamp(timestamp)
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
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


def read_labels(storage: Storage, dataset: str) -> pd.DataFrame:
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
