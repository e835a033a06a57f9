"""A dataset's holiday calendar reaches the labeler and the detector as dates (docs/architecture.md §6)."""

from __future__ import annotations

import datetime as dt

import pytest

from dqad.datasets import DatasetConfigError, parse_catalog
from dqad.detect.config import DetectorConfig, LabelerConfig

BASE = """
[datasets.dq]
keys = ["table_name", "metric_name"]
timestamp = "load_ts"
value = "metric_value"
[datasets.dq.trigger]
table_names = ["dq.t"]
[datasets.dq.source]
kind = "file"
path = "unused.parquet"
"""


def test_country_subdivision_and_extra_dates_become_stage_settings() -> None:
    text = BASE + '[datasets.dq.holidays]\ncountry = "US"\nsubdivision = "NY"\nextra = ["2026-12-24"]\n'
    text += '[datasets.dq.labeler]\nholidays = ["2026-08-03"]\n'
    ds = parse_catalog(text).get("dq")
    today = dt.date(2026, 12, 1)
    lab = LabelerConfig.from_dict(ds.stage_settings("labeler", today))
    det = DetectorConfig.from_dict(ds.stage_settings("detector", today))
    for cfg in (lab, det):
        assert dt.date(2026, 12, 25) in cfg.holidays  # Christmas, from the holidays package
        assert dt.date(2026, 12, 24) in cfg.holidays  # the dataset's own extra date
        assert dt.date(2026, 2, 12) in cfg.holidays  # Lincoln's Birthday: a New York holiday
    assert dt.date(2026, 8, 3) in lab.holidays  # the plain list of the stage section still counts
    assert dt.date(2026, 8, 3) not in det.holidays
    # without a calendar the stage sections are passed as they are
    assert parse_catalog(BASE).get("dq").stage_settings("detector") == {}


@pytest.mark.parametrize(
    "body, message",
    [
        ('country = "XX"', "XX"),
        ('country = "US"\nsubdivision = "ZZ"', "ZZ"),
        ('subdivision = "NY"', "needs holidays.country"),
        ('country = "US"\nregion = "NY"', "region"),
    ],
)
def test_bad_calendars_fail_when_the_catalog_loads(body: str, message: str) -> None:
    with pytest.raises(DatasetConfigError, match=message):
        parse_catalog(BASE + f"[datasets.dq.holidays]\n{body}\n")
