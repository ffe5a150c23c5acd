"""Shared pytest setup: a bounded hypothesis profile for CI, the protocol vectors fixture."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from ingest_support import load_vectors

# CI profile: bounded examples so the unit stage stays within its time budget.
settings.register_profile("ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return load_vectors()
