"""Holiday calendars from the maintained ``holidays`` package, plus a dataset's own dates.

Country calendars change (new observances, moved dates, regional days), so dqad never writes its own
rules for them: a dataset names a country (and optionally a subdivision) and lists its own extra
days, and this module expands that into the dates of the years a run covers. The detector then
learns, per series, whether holidays move its values at all (docs/architecture.md §6).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date


class HolidayCalendarError(ValueError):
    """A country or subdivision the ``holidays`` package does not know; names it."""


@dataclass(frozen=True)
class HolidayCalendar:
    """Which holidays a dataset observes: a country calendar (optional) and its own extra dates."""

    country: str | None = None
    subdivision: str | None = None
    extra: tuple[date, ...] = field(default=())

    def dates(self, start: date, end: date) -> tuple[date, ...]:
        """Every holiday from ``start`` to ``end`` (both included), sorted and unique."""
        return holiday_dates(self.country, start, end, subdivision=self.subdivision, extra=self.extra)


def holiday_dates(
    country: str | None,
    start: date,
    end: date,
    *,
    subdivision: str | None = None,
    extra: Iterable[date | str] = (),
) -> tuple[date, ...]:
    """The holidays of ``country`` (``subdivision``) between ``start`` and ``end``, plus ``extra``.

    ``country`` is an ISO 3166 code the ``holidays`` package knows ("US", "GB", "DE"); ``None`` means
    the dataset's own dates only. Unknown codes raise :class:`HolidayCalendarError` naming the code
    and where the list of codes is, because a typo must not silently mean "no holidays".
    """
    if end < start:
        raise ValueError(f"holiday_dates: end {end} is before start {start}")
    days: set[date] = {_as_date(d) for d in extra}
    if country:
        import holidays

        try:
            calendar = holidays.country_holidays(
                country.upper(), subdiv=subdivision, years=range(start.year, end.year + 1)
            )
        except NotImplementedError as exc:  # the package raises this for unknown countries and subdivisions
            if subdivision and country.upper() in holidays.list_supported_countries():
                raise HolidayCalendarError(
                    f"holiday subdivision {subdivision!r} is not one of {country.upper()}'s "
                    f"({', '.join(holidays.list_supported_countries()[country.upper()][:12])}, ...)"
                ) from exc
            raise HolidayCalendarError(
                f"holiday country {country!r} is not known to the holidays package "
                "(use an ISO 3166 code such as 'US', 'GB' or 'DE')"
            ) from exc
        days.update(calendar.keys())
    return tuple(sorted(d for d in days if start <= d <= end))


def _as_date(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError as exc:
        raise HolidayCalendarError(f"holiday date {value!r} is not an ISO date (YYYY-MM-DD)") from exc


__all__: Sequence[str] = ("HolidayCalendar", "HolidayCalendarError", "holiday_dates")
