"""Keep the VIP configured (or not) on the local interface, for cloud providers.

In an L2 network keepalived adds the VIP itself; behind a cloud floating IP the packets arrive
addressed to the VIP, so the master must also carry it on an interface. ``ip addr replace`` and
``ip addr del`` (tolerating "not there") make both directions idempotent.

The ``ip`` command is configurable (``ip_command``) so tests point it at a recorder script and
never touch the host's interfaces; ``manage_interface = false`` turns the step off entirely.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from .base import ProviderError


@dataclass(frozen=True)
class InterfaceManager:
    vip: str
    prefix: int
    interface: str
    ip_command: str = "ip"

    @property
    def address(self) -> str:
        return f"{self.vip}/{self.prefix}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.ip_command, *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProviderError(f"cannot run {self.ip_command!r} (key ip_command): {exc}") from exc

    def is_present(self) -> bool:
        result = self._run("-o", "addr", "show", "dev", self.interface)
        if result.returncode != 0:
            raise ProviderError(
                f"ip addr show dev {self.interface} failed: {result.stderr.strip()} (key interface)"
            )
        return any(f" {self.address} " in f" {line} " for line in result.stdout.splitlines())

    def ensure_present(self) -> None:
        result = self._run("addr", "replace", self.address, "dev", self.interface)
        if result.returncode != 0:
            raise ProviderError(
                f"ip addr replace {self.address} dev {self.interface} failed: {result.stderr.strip()}"
                " (check key interface)"
            )

    def ensure_absent(self) -> None:
        result = self._run("addr", "del", self.address, "dev", self.interface)
        # Not there, which is what we want: older iproute2 says "Cannot assign requested address",
        # newer (bookworm's 6.1) "Error: ipv4: Address not found."
        absent = ("Cannot assign requested address", "Address not found")
        if result.returncode != 0 and not any(text in result.stderr for text in absent):
            raise ProviderError(
                f"ip addr del {self.address} dev {self.interface} failed: {result.stderr.strip()}"
            )
