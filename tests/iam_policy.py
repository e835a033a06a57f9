"""A small IAM policy evaluator: the strict instrument of the permission-enforced tests.

Why it exists: moto grants every request, so a chain that passes on moto says nothing about the
roles Terraform deploys (docs/security.md, "How permissions are enforced in the tests"). The tests
evaluate each AWS request a stage makes against its role's identity policy with this evaluator.

It follows AWS's documented evaluation logic for identity-based policies of one account:

* default deny; an explicit ``Deny`` that matches wins over any ``Allow``;
* ``Action`` / ``NotAction`` matched case-insensitively with ``*`` and ``?`` wildcards;
* ``Resource`` / ``NotResource`` matched case-sensitively with ``*`` and ``?`` (a ``*`` also spans
  ``/`` and ``:``, as in ARNs);
* ``Condition``: every operator block and every key in it must hold (AND); the values listed for
  one key are alternatives (OR); policy variables ``${aws:userid}``-style in condition values and
  resources are replaced from the request context;
* operators: String(Not)Equals, String(Not)EqualsIgnoreCase, String(Not)Like, Arn(Not)Equals,
  Arn(Not)Like, Bool, Null, each with ``...IfExists``, and the set operators ``ForAllValues:`` /
  ``ForAnyValue:``. A key absent from the request makes a condition false, except for the negated
  operators, ``...IfExists``, ``ForAllValues:`` and ``Null`` (AWS: "Condition operators" and
  "Single-valued vs. multivalued context keys"). An operator it does not know raises: an
  instrument that silently passes what it cannot read would not be strict.

Session policies, permission boundaries, SCPs and resource policies are out of scope: the roles are
in the bucket's own account and carry none of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

ContextValue = str | list[str] | bool
Decision = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]


@dataclass(frozen=True)
class Condition:
    operator: str  # e.g. "StringEquals", "ForAllValues:StringLike", "StringLikeIfExists"
    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Statement:
    sid: str = ""
    effect: Literal["Allow", "Deny"] = "Allow"
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()

    def __post_init__(self) -> None:
        if bool(self.actions) == bool(self.not_actions):
            raise ValueError(f"statement {self.sid!r}: exactly one of Action / NotAction")
        if bool(self.resources) == bool(self.not_resources):
            raise ValueError(f"statement {self.sid!r}: exactly one of Resource / NotResource")

    @classmethod
    def from_json(cls, doc: Mapping) -> Statement:
        """A statement as written in a JSON policy document."""

        def many(key: str) -> tuple[str, ...]:
            value = doc.get(key, ())
            return (value,) if isinstance(value, str) else tuple(value)

        conditions = tuple(
            Condition(op, key, (vals,) if isinstance(vals, str) else tuple(str(v) for v in vals))
            for op, block in (doc.get("Condition") or {}).items()
            for key, vals in block.items()
        )
        return cls(
            sid=doc.get("Sid", ""),
            effect=doc.get("Effect", "Allow"),
            actions=many("Action"),
            not_actions=many("NotAction"),
            resources=many("Resource"),
            not_resources=many("NotResource"),
            conditions=conditions,
        )


@dataclass(frozen=True)
class Request:
    action: str  # "s3:GetObject"
    resource: str  # an ARN, or "*" for actions without a resource type
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def __str__(self) -> str:
        ctx = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{ctx}"


@dataclass(frozen=True)
class Result:
    decision: Decision
    matched: tuple[str, ...]  # sids of the statements that decided it

    @property
    def allowed(self) -> bool:
        return self.decision == "Allow"


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    return bool(_glob(pattern, ignore_case).match(value))


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def substitute(text: str, context: Mapping[str, ContextValue]) -> str | None:
    """Policy variables replaced from the context; None when one is missing (then nothing matches)."""
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        if name in ("*", "?", "$"):  # ${*} ${?} ${$}: the literal characters
            return name
        value = context.get(name)
        if not isinstance(value, str):
            missing = True
            return ""
        return value

    out = _VARIABLE.sub(sub, text)
    return None if missing else out


def _match_value(base: str, policy_value: str, value: str) -> bool:
    if base in ("StringEquals", "ArnEquals"):
        return policy_value == value
    if base == "StringEqualsIgnoreCase":
        return policy_value.lower() == value.lower()
    if base in ("StringLike", "ArnLike"):
        return wildcard_match(policy_value, value)
    if base == "Bool":
        return policy_value.lower() == value.lower()
    raise ValueError(f"condition operator {base!r} is not implemented by this evaluator")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}
_POSITIVE = {"StringEquals", "StringEqualsIgnoreCase", "StringLike", "ArnEquals", "ArnLike", "Bool"}


def condition_holds(cond: Condition, context: Mapping[str, ContextValue]) -> bool:
    operator = cond.operator
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAllValues", "ForAnyValue"):
            raise ValueError(f"set operator {qualifier!r} is not implemented by this evaluator")
    if_exists = operator.endswith("IfExists")
    if if_exists:
        operator = operator[: -len("IfExists")]
    raw = context.get(cond.key)
    present = raw is not None and raw != []
    if operator == "Null":
        return (cond.values[0].lower() == "true") == (not present)
    if operator not in _POSITIVE and operator not in _NEGATED:
        raise ValueError(f"condition operator {cond.operator!r} is not implemented by this evaluator")
    values = [v for v in (substitute(p, context) for p in cond.values) if v is not None]
    negated = operator in _NEGATED
    base = _NEGATED.get(operator, operator)
    if not present:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        return if_exists or negated
    if isinstance(raw, bool):
        request_values = [str(raw).lower()]
    elif isinstance(raw, str):
        request_values = [raw]
    else:
        request_values = [str(v) for v in raw]

    def one(value: str) -> bool:
        hit = any(_match_value(base, p, value) for p in values)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in request_values)
    if qualifier == "ForAnyValue":
        return any(one(v) for v in request_values)
    if len(request_values) != 1:
        raise ValueError(f"{cond.key} has several values in the request: use ForAllValues/ForAnyValue")
    return one(request_values[0])


def statement_applies(st: Statement, request: Request) -> bool:
    if st.actions:
        action_hit = any(wildcard_match(a, request.action, ignore_case=True) for a in st.actions)
    else:
        action_hit = not any(wildcard_match(a, request.action, ignore_case=True) for a in st.not_actions)
    if not action_hit:
        return False

    def resource_hit(patterns: Iterable[str]) -> bool:
        for p in patterns:
            concrete = substitute(p, request.context)
            if concrete is not None and wildcard_match(concrete, request.resource):
                return True
        return False

    if st.resources:
        if not resource_hit(st.resources):
            return False
    elif resource_hit(st.not_resources):
        return False
    return all(condition_holds(c, request.context) for c in st.conditions)


@dataclass(frozen=True)
class Policy:
    """The statements of every identity policy attached to one principal."""

    name: str
    statements: tuple[Statement, ...]

    def evaluate(self, request: Request) -> Result:
        allows, denies = [], []
        for st in self.statements:
            if statement_applies(st, request):
                (denies if st.effect == "Deny" else allows).append(st.sid)
        if denies:
            return Result("ExplicitDeny", tuple(denies))
        if allows:
            return Result("Allow", tuple(allows))
        return Result("ImplicitDeny", ())

    def without(self, sid: str, action: str | None = None) -> Policy:
        """This policy with one statement removed, or with one action removed from one statement."""
        out = []
        found = False
        for st in self.statements:
            if st.sid != sid:
                out.append(st)
                continue
            found = True
            if action is None:
                continue
            kept = tuple(a for a in st.actions if a != action)
            if kept:
                out.append(Statement(st.sid, st.effect, kept, (), st.resources, st.not_resources, st.conditions))
        if not found:
            raise KeyError(f"{self.name} has no statement {sid!r}")
        return Policy(f"{self.name} without {sid}{':' + action if action else ''}", tuple(out))
