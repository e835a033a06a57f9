"""Storage pointers are verified; a rejected put_events entry is an error, never a silent drop."""

from __future__ import annotations

import pandas as pd
import pytest

from dqad.bus import EventPublisher, PublishError
from dqad.contract import LoadCompleted
from dqad.settings import Settings, SettingsError
from dqad.storage import IntegrityError, Storage


def test_parquet_round_trip_with_rows_and_sha(storage: Storage, tmp_path) -> None:
    frame = pd.DataFrame({"series": ["a", "b"], "value": [1.0, 2.0]})
    for uri in (storage.uri("x/f.parquet"), f"file://{tmp_path}/f.parquet"):
        ref = storage.write_parquet(uri, frame)
        assert ref.rows == 2 and len(ref.sha256) == 64
        pd.testing.assert_frame_equal(storage.read_parquet(ref), frame)


def test_tampered_object_is_refused(storage: Storage) -> None:
    ref = storage.write_parquet(storage.uri("x/f.parquet"), pd.DataFrame({"v": [1.0]}))
    storage.write_parquet(ref.uri, pd.DataFrame({"v": [2.0]}))
    with pytest.raises(IntegrityError, match="sha256"):
        storage.read_parquet(ref)


class _RejectingEvents:
    def put_events(self, Entries):
        return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"}]}


def test_failed_entry_count_raises_and_names_the_error(storage: Storage) -> None:
    pub = EventPublisher(_RejectingEvents(), "bus", storage, "fetcher")
    event = LoadCompleted(
        run_id="r-1", dataset="d", log_id="1", table_name="t", loaded_at="2026-11-02T06:00:00Z", status="SUCCESS"
    )
    with pytest.raises(PublishError, match="ThrottlingException: slow down"):
        pub.publish(event)
    assert storage.exists(storage.uri("events/r-1/LoadCompleted.json")), "the event log keeps what was attempted"


def test_settings_name_the_missing_variable() -> None:
    with pytest.raises(SettingsError, match="DQAD_BUCKET"):
        Settings.from_env({"DQAD_BUS_NAME": "b", "DQAD_DATASETS_URI": "s3://x/y"})
    with pytest.raises(SettingsError, match="DQAD_REPORT_LINK_EXPIRY_S must be an integer"):
        Settings.from_env(
            {
                "DQAD_BUS_NAME": "b",
                "DQAD_BUCKET": "x",
                "DQAD_DATASETS_URI": "s3://x/y",
                "DQAD_REPORT_LINK_EXPIRY_S": "soon",
            }
        )
    s = Settings.from_env({"DQAD_BUS_NAME": "b", "DQAD_BUCKET": "x", "DQAD_DATASETS_URI": "s3://x/y"})
    with pytest.raises(SettingsError, match="DQAD_ALERTS_TOPIC_ARN"):
        s.require("alerts_topic_arn")
