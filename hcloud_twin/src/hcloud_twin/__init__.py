"""A local twin of the Hetzner Cloud API for tests, drills and rehearsals (see hcloud_twin/README.md)."""

from .core import ERRORS, FAULT_CODES, ApiError, Twin
from .service import HcloudTwin

__all__ = ["ERRORS", "FAULT_CODES", "ApiError", "HcloudTwin", "Twin"]
