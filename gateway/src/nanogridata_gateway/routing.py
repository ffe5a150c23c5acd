"""Routing engine: (payload type, model) -> the sinks a record must reach, as a spool bit mask."""

from __future__ import annotations

from collections.abc import Mapping

from .delivery_config import DeliveryConfig


class UnroutableRecord(Exception):
    """A record whose type has no route (cannot happen with a validated config)."""


class Router:
    def __init__(self, config: DeliveryConfig, bits: Mapping[str, int]) -> None:
        self._config = config
        self._bits = dict(bits)
        self._cache: dict[tuple[int, int], int] = {}

    def sinks_for(self, frame_type: int, model_id: int) -> tuple[str, ...]:
        return self._config.sinks_for(frame_type, model_id)

    def mask_for(self, frame_type: int, model_id: int) -> int:
        """Bit mask of the sinks routed to; cached per (type, model)."""
        key = (frame_type, model_id)
        mask = self._cache.get(key)
        if mask is None:
            names = self.sinks_for(frame_type, model_id)
            if not names:
                raise UnroutableRecord(f"no route for type 0x{frame_type:02x} model 0x{model_id:02x}")
            mask = 0
            for name in names:
                mask |= 1 << self._bits[name]
            self._cache[key] = mask
        return mask


def routed_sink_names(config: DeliveryConfig) -> list[str]:
    """Every sink some route names (built-in `local` included), in a stable order."""
    names: dict[str, None] = {}
    for targets in config.routes.values():
        for name in targets:
            names[name] = None
    return sorted(names)
