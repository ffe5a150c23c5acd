"""Provider ``none``: an L2 network. keepalived itself adds the VIP (virtual_ipaddress) and sends
gratuitous ARP, so there is nothing to do beyond the metrics notify.py writes."""

from __future__ import annotations

from collections.abc import Callable


class NoneProvider:
    name = "none"

    def take_over(self, still_master: Callable[[], bool]) -> None:
        return None

    def routed_here(self) -> bool:
        return True  # nothing outside keepalived decides where the VIP goes
