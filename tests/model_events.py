"""A ModelTrained event pointing at a model file of the test's choosing, for the tests that check what
the scorer refuses to load (a forged reference, a wrong sha256)."""

from __future__ import annotations

import pandas as pd

from dqad.contract import ModelTrained
from dqad.storage import Storage


def model_trained_event(
    storage: Storage, model_uri: str, sha256: str, *, signature: str = "", version: str = "v1", run_id: str = "r-9"
) -> ModelTrained:
    """The event of a reused model of dataset ``demo_dq``, with one-row labelled and new files."""
    data = storage.write_parquet(
        storage.uri(f"runs/demo_dq/{run_id}/labeled.parquet"), pd.DataFrame({"series": ["s"], "value": [1.0]})
    )
    return ModelTrained(
        run_id=run_id,
        dataset="demo_dq",
        reused=True,
        metrics={},
        model={"uri": model_uri, "sha256": sha256, "version": version, "signature": signature},
        labeled=data,
        new=data,
        window={
            "history_start": "2026-01-01T00:00:00Z",
            "new_start": "2026-02-01T00:00:00Z",
            "new_end": "2026-02-02T00:00:00Z",
        },
    )
