"""What the ETL log alone says about a table's loads: the incident record of the freshness check.

The fetcher decides (:mod:`dqad_fetcher.freshness`), the notifier words it
(:mod:`dqad_notifier.freshness`); this small record is what travels between them inside a
``LoadLogChecked`` event, so it lives in the one library both import. It is a frozen dataclass with
plain-JSON ``to_json``/``from_json`` on purpose: the scorer's named incidents (one per load) are
another record, and a later merge can map this one onto it field by field.

Kinds (docs/alerts.md, "Late, missing and empty loads"):

* ``late_load``: the load due at ``due_at`` has not arrived past its usual lateness;
* ``missing_load``: the next load is due too and neither came (``missed`` ≥ 2 loads);
* ``load_arrived``: a load reported late or missing has arrived (``arrived_at``); closes the incident;
* ``empty_load``: the ETL log row of a successful load says 0 rows (``row_count``);
* ``slow_load``: the latest load took far longer than the table's loads usually take
  (``duration_s`` against ``usual_duration_s``, from the log's started_at / loaded_at).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the incidents module is imported where a record becomes one
    from dqad.incidents import Incident

IncidentKind = Literal["late_load", "missing_load", "load_arrived", "empty_load", "slow_load"]
INCIDENT_KINDS: tuple[str, ...] = ("late_load", "missing_load", "load_arrived", "empty_load", "slow_load")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _dt(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class LoadIncident:
    """One table's late, missing, arrived or empty load, in the words the email needs."""

    kind: IncidentKind
    table: str
    job: str = ""
    due_at: datetime | None = None  # the first load that did not come on time (UTC)
    cadence: str = ""  # what was learnt or configured: "daily at 02:15 UTC", "weekdays at 06:00 Europe/Paris"
    lateness_s: float | None = None  # late so far (late/missing), or how late it finally came (arrived)
    arrived_at: datetime | None = None  # load_arrived: when it came; empty_load: the log row's load time
    last_arrival: datetime | None = None  # the latest load that did come before this incident
    missed: int = 0  # loads due and not arrived (late: 1, missing: ≥ 2)
    row_count: int | None = None  # empty_load: what the log says
    log_id: str = ""  # empty_load: the log row
    duration_s: float | None = None  # slow_load: how long this load took
    usual_duration_s: float | None = None  # slow_load: the median of the table's loads

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"incident kind {self.kind!r} is not one of {', '.join(INCIDENT_KINDS)}")
        if not self.table:
            raise ValueError("incident table is empty")

    @property
    def key(self) -> str:
        """What makes two reports the same news (used for deterministic run ids and dedupe)."""
        return f"{self.kind}|{self.table}|{_iso(self.due_at) or ''}|{_iso(self.arrived_at) or ''}|{self.log_id}"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("due_at", "arrived_at", "last_arrival"):
            out[name] = _iso(out[name])
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> LoadIncident:
        if not isinstance(doc, dict):
            raise ValueError(f"an incident must be a JSON object, got {type(doc).__name__}")
        known = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        for name in ("due_at", "arrived_at", "last_arrival"):
            known[name] = _dt(known.get(name))
        return cls(**known)


#: the named-incident kind (:class:`dqad.incidents.Kind` value) of each kind of this record;
#: ``load_arrived`` is the closing note of a late load
INCIDENT_KIND_OF: dict[str, str] = {
    "late_load": "late_load",
    "missing_load": "missing_load",
    "load_arrived": "late_load",
    "empty_load": "empty_load",
    "slow_load": "slow_load",
}


def as_incident(record: LoadIncident, summary: str, dataset: str = "") -> Incident:
    """The record as a named incident (:class:`dqad.incidents.Incident`), for lists of every kind.

    ``summary`` is the one line the notifier words it with (``dqad_notifier.freshness.line``).
    """
    from dqad.incidents import Incident, Kind

    at = record.due_at or record.arrived_at or datetime.now(UTC)
    return Incident(
        kind=Kind(INCIDENT_KIND_OF[record.kind]),
        tables=(record.table,),
        timestamp=at.astimezone(UTC).replace(tzinfo=None),
        severity="high" if record.kind in ("missing_load", "empty_load") else "medium",
        summary=summary,
        job=record.job,
        dataset=dataset,
        status="closed" if record.kind == "load_arrived" else "open",
    )

