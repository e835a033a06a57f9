"""Holiday calendars come from the holidays package, with a dataset's own extra dates."""

from __future__ import annotations

from datetime import date

import pytest

from dqad.detect.holiday_calendar import HolidayCalendar, HolidayCalendarError, holiday_dates


def test_country_calendar_has_its_moving_holidays() -> None:
    days = holiday_dates("US", date(2026, 1, 1), date(2026, 12, 31))
    assert date(2026, 11, 26) in days  # Thanksgiving: fourth Thursday of November
    assert date(2026, 7, 3) in days  # Independence Day observed (4 July 2026 is a Saturday)
    assert date(2026, 12, 24) not in days


def test_subdivision_and_extra_dates_are_added() -> None:
    cal = HolidayCalendar(country="US", subdivision="NY", extra=(date(2026, 12, 24),))
    days = cal.dates(date(2026, 1, 1), date(2026, 12, 31))
    assert date(2026, 2, 12) in days  # Lincoln's Birthday, a New York holiday
    assert date(2026, 12, 24) in days
    assert date(2026, 2, 12) not in holiday_dates("US", date(2026, 1, 1), date(2026, 12, 31))


def test_two_countries_differ() -> None:
    uk = holiday_dates("GB", date(2026, 1, 1), date(2026, 12, 31))
    us = holiday_dates("US", date(2026, 1, 1), date(2026, 12, 31))
    assert date(2026, 12, 28) in uk and date(2026, 11, 26) not in uk  # Boxing Day substitute; no Thanksgiving
    assert set(uk) != set(us)


def test_only_extra_dates_without_a_country() -> None:
    assert holiday_dates(None, date(2026, 1, 1), date(2026, 12, 31), extra=["2026-03-02"]) == (date(2026, 3, 2),)


@pytest.mark.parametrize(
    ("country", "subdivision", "message"),
    [("XX", None, "holiday country 'XX'"), ("US", "ZZ", "holiday subdivision 'ZZ'")],
)
def test_unknown_codes_are_named(country: str, subdivision: str | None, message: str) -> None:
    with pytest.raises(HolidayCalendarError, match=message):
        holiday_dates(country, date(2026, 1, 1), date(2026, 12, 31), subdivision=subdivision)


def test_bad_extra_date_is_named() -> None:
    with pytest.raises(HolidayCalendarError, match="'2026-13-01'"):
        holiday_dates(None, date(2026, 1, 1), date(2026, 12, 31), extra=["2026-13-01"])
