"""Faithful local stub of the Hetzner Cloud API (floating IP assign, actions, servers)."""

from .server import ENDPOINTS, ERROR_BODIES, HcloudStub

__all__ = ["ENDPOINTS", "ERROR_BODIES", "HcloudStub"]
