"""Fixtures of the Terraform checks. ``tfkit`` holds the helpers (HCL access, the AWS-call scanner)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _load_tfkit() -> ModuleType:
    # The suite runs with --import-mode=importlib: this directory is not importable by name.
    name = "dqad_tests_tfkit"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("tfkit.py"))
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tfkit() -> ModuleType:
    return _load_tfkit()
