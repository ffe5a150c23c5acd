"""Makes terraform/inventory_bridge.py importable and shares the recorded tofu output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

TERRAFORM_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TERRAFORM_DIR))

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def staging_output() -> dict[str, Any]:
    """`tofu output -json` recorded for staging (see fixtures/README.md); a fresh copy per test."""
    document: dict[str, Any] = json.loads((FIXTURES / "tofu-output-staging.json").read_text(encoding="utf-8"))
    return document
