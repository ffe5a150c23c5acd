"""Project checkov policies for the hcloud provider, which checkov itself has no checks for.

Loaded with `checkov --external-checks-dir terraform/checkov_checks` (terraform/ci/config.sh).
"""

from pathlib import Path

__all__ = [p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "__init__"]
