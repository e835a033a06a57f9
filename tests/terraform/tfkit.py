"""Helpers of the Terraform checks: HCL access, template evaluation, and the AWS-call scanner.

Loaded by ``conftest.py`` (the suite runs with ``--import-mode=importlib``, so this directory is not
on ``sys.path``). Why a scanner: the issue asks that every AWS action a service's code calls be
granted to its role. Reading the code is the only way to know what it calls, so the scanner follows
boto3 clients from where they are created (``client("s3")``, ``clients("s3")``) through variables,
attributes and parameters to the method calls made on them, across the service's package and the
``dqad`` modules it imports, and turns method names into IAM actions with botocore's service models.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
SHARED = REPO / "shared"

# --------------------------------------------------------------------------------------------------
# HCL
# --------------------------------------------------------------------------------------------------


@functools.cache
def load(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f)


def tf_files(under: Path = TF) -> list[Path]:
    return sorted(under.rglob("*.tf"))


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted ('"x"'); expressions come as '${...}'."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    return value


def load_dir(directory: Path) -> dict[str, list]:
    """All top-level blocks of a Terraform directory (one root or module), merged by kind."""
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, items in load(path).items():
            merged.setdefault(kind, []).extend(items)
    return merged


def labelled(doc: dict[str, list], kind: str) -> Iterator[tuple[str, str, dict]]:
    """(type, name, body) of `resource`/`data` blocks."""
    for item in doc.get(kind, []):
        for rtype, named in item.items():
            for name, body in named.items():
                yield unquote(rtype), unquote(name), body


def named(doc: dict[str, list], kind: str) -> dict[str, dict]:
    """`module`/`variable`/`output` blocks by name."""
    out: dict[str, dict] = {}
    for item in doc.get(kind, []):
        for name, body in item.items():
            out[unquote(name)] = body
    return out


def locals_of(doc: dict[str, list]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in doc.get("locals", []):
        out.update({k: v for k, v in item.items() if not k.startswith("__")})
    return out


def resource(doc: dict[str, list], rtype: str, name: str) -> dict:
    for t, n, body in labelled(doc, "resource"):
        if (t, n) == (rtype, name):
            return body
    raise KeyError(f"resource {rtype}.{name}")


def block(body: dict, name: str) -> dict:
    """The single nested block `name` of a body (hcl2 gives a list of one)."""
    value = body[name]
    return value[0] if isinstance(value, list) else value


def render(template: str, values: dict[str, str]) -> str:
    """Evaluate a string template made only of literals and ${var.x}/${local.x}/${each.x} references."""

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1).strip()
        if ref not in values:
            raise KeyError(f"unresolved {ref} in {template}")
        return values[ref]

    return re.sub(r"\$\{([^}]*)\}", sub, unquote(template))


# --------------------------------------------------------------------------------------------------
# IAM policy documents
# --------------------------------------------------------------------------------------------------


@dataclass
class Statement:
    where: str
    effect: str
    actions: list[str]
    resources: list[str]
    has_condition: bool


def statements(doc_body: dict, where: str) -> list[Statement]:
    """Statements of an aws_iam_policy_document, including `dynamic "statement"` contents."""
    bodies = list(doc_body.get("statement", []))
    for dyn in doc_body.get("dynamic", []):
        for label, spec in dyn.items():
            if unquote(label) == "statement":
                bodies.extend(spec["content"])
    out = []
    for s in bodies:
        actions = s.get("actions", [])
        resources = s.get("resources", [])
        out.append(
            Statement(
                where=f"{where}:{unquote(s.get('sid', '?'))}",
                effect=unquote(s.get("effect", '"Allow"')),
                actions=[unquote(a) for a in (actions if isinstance(actions, list) else [actions])],
                resources=[unquote(r) for r in (resources if isinstance(resources, list) else [resources])],
                has_condition=bool(s.get("condition")),
            )
        )
    return out


def policy_documents(doc: dict[str, list], where: str) -> dict[str, list[Statement]]:
    return {
        name: statements(body, f"{where}/{name}")
        for rtype, name, body in labelled(doc, "data")
        if rtype == "aws_iam_policy_document"
    }


# --------------------------------------------------------------------------------------------------
# Which Python files make up a service
# --------------------------------------------------------------------------------------------------


def _module_file(dotted: str) -> Path | None:
    parts = dotted.split(".")
    if parts[0] != "dqad":
        return None
    base = SHARED.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(SHARED).with_suffix("").parts) if path.is_relative_to(SHARED) else ""
    if path.name == "__init__.py":
        package += ".__init__"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def service_files(stage: str) -> list[Path]:
    """The service's own packages plus every dqad module they import, transitively."""
    files = {p for p in (REPO / "services" / stage).rglob("*.py") if "tests" not in p.parts}
    todo = list(files)
    while todo:
        path = todo.pop()
        for dotted in _imports(path):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):  # the module and the packages it sits in
                target = _module_file(".".join(parts[:i]))
                if target and target not in files:
                    files.add(target)
                    todo.append(target)
    return sorted(files)


# --------------------------------------------------------------------------------------------------
# The scanner: boto3 method calls -> IAM actions
# --------------------------------------------------------------------------------------------------

# API operations whose IAM action has another name (or that are covered by another action).
ACTION_ALIASES = {
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:DeleteObjects": "s3:DeleteObject",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Client methods that are not API operations but make calls (s3transfer, presigning).
TRANSFER_METHODS = {
    ("s3", "upload_file"): ["s3:PutObject"],
    ("s3", "upload_fileobj"): ["s3:PutObject"],
    ("s3", "download_file"): ["s3:GetObject"],
    ("s3", "download_fileobj"): ["s3:GetObject"],
}
NOT_CALLS = {"exceptions", "meta", "can_paginate", "get_waiter", "close"}
# Library classes/functions that call AWS with a client or on their own.
LIBRARY_CALLS = {
    "DynamoDBPersistenceLayer": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
    "get_secret": ["secretsmanager:GetSecretValue"],
    "get_parameter": ["ssm:GetParameter"],
    "get_parameters": ["ssm:GetParametersByPath"],
}


@functools.cache
def _service_model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.cache
def aws_services() -> frozenset[str]:
    import botocore.session

    return frozenset(botocore.session.get_session().get_available_services())


def to_action(service: str, method: str) -> list[str]:
    """IAM actions of one client method, or [] when the method is not an API call."""
    if (service, method) in TRANSFER_METHODS:
        return TRANSFER_METHODS[(service, method)]
    model = _service_model(service)
    from botocore import xform_name

    ops = {xform_name(op): op for op in model.operation_names}
    if method not in ops:
        return []
    prefix = model.signing_name or model.endpoint_prefix
    action = f"{prefix}:{ops[method]}"
    return [ACTION_ALIASES.get(action, action)]


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


@dataclass
class Scan:
    """What the code of one service calls: {action: [where, ...]}, plus what could not be followed."""

    actions: dict[str, list[str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def add(self, action: str, where: str) -> None:
        places = self.actions.setdefault(action, [])
        if where not in places:
            places.append(where)


class _Scanner:
    def __init__(self, files: list[Path]) -> None:
        self.trees = {p: ast.parse(p.read_text(), str(p)) for p in files}
        # name -> list of (params) for module-level functions, methods and classes (their __init__)
        self.defs: dict[str, list[list[str]]] = {}
        self.returns_client: dict[str, str] = {}
        # bindings: ("var", func_qualname, name) / ("attr", attr_name) / ("param", def_name, param)
        self.bound: dict[tuple[str, ...], str] = {}
        for tree in self.trees.values():
            self._collect_defs(tree)

    def _collect_defs(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
                self.defs.setdefault(node.name, []).append(params)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        params = [a.arg for a in item.args.args + item.args.kwonlyargs]
                        self.defs.setdefault(node.name, []).append(params)

    # -- what expression is a client of which service --------------------------------------------
    def service_of(self, expr: ast.expr, scope: str) -> str | None:
        if isinstance(expr, ast.Call):
            name = _call_name(expr.func)
            if (
                name
                and "client" in name.lower()
                and expr.args
                and isinstance(expr.args[0], ast.Constant)
                and isinstance(expr.args[0].value, str)
                and expr.args[0].value in aws_services()
            ):
                return expr.args[0].value
            if name in self.returns_client:
                return self.returns_client[name]
            return None
        if isinstance(expr, ast.Name):
            return self.bound.get(("var", scope, expr.id))
        if isinstance(expr, ast.Attribute):
            return self.bound.get(("attr", expr.attr))
        return None

    def _bind(self, key: tuple[str, ...], service: str) -> bool:
        if self.bound.get(key) == service:
            return False
        self.bound[key] = service
        return True

    # -- propagate bindings to a fixpoint -----------------------------------------------------------
    def propagate(self) -> None:
        changed = True
        while changed:
            changed = False
            for tree in self.trees.values():
                for fn, scope in self._functions(tree):
                    changed |= self._propagate_in(fn, scope)

    def _functions(self, tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
        """Every function with its scope name (a class's __init__ is scoped by the class name)."""
        yield tree, "<module>"
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        yield item, node.name
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "__init__":
                yield node, node.name

    @staticmethod
    def _own_nodes(fn: ast.AST) -> Iterator[ast.AST]:
        """Nodes of a function (or module) body, not descending into nested functions or classes."""
        todo = list(ast.iter_child_nodes(fn))
        while todo:
            node = todo.pop()
            yield node
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                todo.extend(ast.iter_child_nodes(node))

    def _propagate_in(self, fn: ast.AST, scope: str) -> bool:
        changed = False
        # parameters already bound by callers
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs:
                svc = self.bound.get(("param", scope, a.arg))
                if svc:
                    changed |= self._bind(("var", scope, a.arg), svc)
        for node in self._own_nodes(fn):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                svc = self.service_of(node.value, scope)
                if not svc:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        changed |= self._bind(("var", scope, t.id), svc)
                    elif isinstance(t, ast.Attribute):
                        changed |= self._bind(("attr", t.attr), svc)
            elif isinstance(node, ast.Return) and node.value is not None and scope != "<module>":
                svc = self.service_of(node.value, scope)
                if svc and self.returns_client.get(scope) != svc:
                    self.returns_client[scope] = svc
                    changed = True
            elif isinstance(node, ast.Call):
                changed |= self._bind_arguments(node, scope)
        return changed

    def _bind_arguments(self, call: ast.Call, scope: str) -> bool:
        name = _call_name(call.func)
        if name not in self.defs:
            return False
        changed = False
        for params in self.defs[name]:
            positional = [p for p in params if p not in ("self", "cls")]
            for i, arg in enumerate(call.args):
                svc = self.service_of(arg, scope)
                if svc and i < len(positional):
                    changed |= self._bind(("param", name, positional[i]), svc)
            for kw in call.keywords:
                svc = self.service_of(kw.value, scope) if kw.arg else None
                if svc and kw.arg in params:
                    changed |= self._bind(("param", name, kw.arg), svc)
        # a def named like a class: its __init__ params bind attributes through `self.x = param`
        return changed

    # -- collect the calls ---------------------------------------------------------------------------
    def collect(self) -> Scan:
        scan = Scan()
        for path, tree in self.trees.items():
            rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            for fn, scope in self._functions(tree):
                for node in self._own_nodes(fn):
                    if not isinstance(node, ast.Call):
                        continue
                    where = f"{rel}:{node.lineno}"
                    name = _call_name(node.func)
                    if name in LIBRARY_CALLS:
                        for action in LIBRARY_CALLS[name]:
                            scan.add(action, where)
                    if name == "resource" and isinstance(node.func, ast.Attribute):
                        arg = node.args[0] if node.args else None
                        if isinstance(arg, ast.Constant) and arg.value in aws_services():
                            scan.unresolved.append(f"{where}: boto3 resource API is not scanned; use a client")
                    if not isinstance(node.func, ast.Attribute):
                        continue
                    svc = self.service_of(node.func.value, scope)
                    if not svc or node.func.attr in NOT_CALLS:
                        continue
                    method = node.func.attr
                    if method in ("get_paginator", "generate_presigned_url"):
                        arg = node.args[0] if node.args else None
                        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                            method = arg.value
                        else:
                            scan.unresolved.append(f"{where}: {svc}.{method} with a non-literal operation")
                            continue
                    actions = to_action(svc, method)
                    if not actions:
                        scan.unresolved.append(f"{where}: {svc}.{method} is not a {svc} operation")
                    for action in actions:
                        scan.add(action, where)
        return scan


def scan_files(files: list[Path]) -> Scan:
    scanner = _Scanner(files)
    scanner.propagate()
    return scanner.collect()


@functools.cache
def scan_stage(stage: str) -> Scan:
    return scan_files(service_files(stage))


def iam_declared() -> dict[str, Any]:
    return json.loads((TF / "iam_actions.json").read_text())
