"""Fixtures for the unit tests (helpers live in hardway_testlib.py)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hardway_testlib import run_module_inprocess  # noqa: E402


@pytest.fixture
def run_module():
    return run_module_inprocess
