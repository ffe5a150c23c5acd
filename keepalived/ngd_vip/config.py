"""Configuration: /etc/nanogridata/vip.toml (or $NGD_VIP_CONFIG), a few env overrides.

    provider = "hcloud"                 # none | hcloud | aws
    metrics_dir = "/var/lib/prometheus/node-exporter"
    vip = "203.0.113.10"                # required for hcloud (interface step)
    vip_prefix = 32
    interface = "eth0"
    manage_interface = true             # cloud providers: ip addr replace/del the VIP
    ip_command = "ip"

    [hcloud]
    token_file = "/etc/nanogridata/hcloud-token"    # mode 0600 or 0400, owned by root
    floating_ip_id = 12345
    server_id = 42                      # or server_name (default: this host's name)
    endpoint = "https://api.hetzner.cloud/v1"
    deadline_seconds = 30

    [aws]
    region = "eu-central-1"
    allocation_id = "eipalloc-..."
    instance_id = "i-..."

Environment: NGD_VIP_CONFIG (file), NGD_VIP_METRICS_DIR, NGD_VIP_PROVIDER, NGD_VIP_HCLOUD_ENDPOINT.
Every error names the key and says how to fix it.
"""

from __future__ import annotations

import os
import socket
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .base import ConfigError

DEFAULT_CONFIG = Path("/etc/nanogridata/vip.toml")
DEFAULT_METRICS_DIR = Path("/var/lib/prometheus/node-exporter")
PROVIDERS = ("none", "hcloud", "aws")
T = TypeVar("T")


@dataclass(frozen=True)
class HcloudConfig:
    token: str
    floating_ip_id: int
    server_id: int | None
    server_name: str
    endpoint: str = "https://api.hetzner.cloud/v1"
    deadline_seconds: float = 30.0
    request_timeout_seconds: float = 5.0
    backoff_base_seconds: float = 0.25
    backoff_cap_seconds: float = 4.0
    poll_interval_seconds: float = 0.25


@dataclass(frozen=True)
class AwsConfig:
    region: str
    allocation_id: str
    instance_id: str
    endpoint_url: str | None = None
    max_attempts: int = 5
    timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Config:
    path: Path
    provider: str
    metrics_dir: Path
    vip: str | None
    vip_prefix: int
    interface: str | None
    manage_interface: bool
    ip_command: str
    hcloud: HcloudConfig | None
    aws: AwsConfig | None


def _get(table: dict[str, Any], key: str, kind: type[T], where: str, default: T | None = None) -> T:
    value = table.get(key, default)
    if value is None:
        raise ConfigError(f"{where}{key} is required: set it in the config file")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}{key} must be a {kind.__name__}, not {type(value).__name__} {value!r}")
    return value


def _opt(table: dict[str, Any], key: str, kind: type[T], where: str) -> T | None:
    return _get(table, key, kind, where) if table.get(key) is not None else None


def read_token(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(
            f"hcloud.token_file {path}: {exc.strerror}; create it with the API token, mode 0600"
        ) from exc
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"hcloud.token_file {path} is mode {stat.S_IMODE(info.st_mode):04o}: "
            f"it holds a secret, run 'chmod 600 {path}'"
        )
    token = path.read_text(encoding="utf-8").strip()
    if not token:
        raise ConfigError(f"hcloud.token_file {path} is empty: write the API token into it")
    return token


def load(path: Path | None = None) -> Config:
    path = path or Path(os.environ.get("NGD_VIP_CONFIG", str(DEFAULT_CONFIG)))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found: create it or point NGD_VIP_CONFIG at it") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc

    provider = os.environ.get("NGD_VIP_PROVIDER") or _get(data, "provider", str, "", "none")
    if provider not in PROVIDERS:
        raise ConfigError(f"provider must be one of {', '.join(PROVIDERS)}, not {provider!r}")
    metrics_dir = Path(
        os.environ.get("NGD_VIP_METRICS_DIR") or _get(data, "metrics_dir", str, "", str(DEFAULT_METRICS_DIR))
    )
    vip = _opt(data, "vip", str, "")
    interface = _opt(data, "interface", str, "")
    manage_interface = _get(data, "manage_interface", bool, "", provider == "hcloud")
    vip_prefix = _get(data, "vip_prefix", int, "", 32)
    if not 0 < vip_prefix <= 128:
        raise ConfigError(f"vip_prefix must be 1..128, not {vip_prefix}")
    if manage_interface and provider != "none" and (vip is None or interface is None):
        raise ConfigError(
            "vip and interface are required when manage_interface is true (or set manage_interface = false)"
        )

    hcloud_cfg = None
    if provider == "hcloud":
        table = data.get("hcloud")
        if not isinstance(table, dict):
            raise ConfigError("provider hcloud needs an [hcloud] table with token_file and floating_ip_id")
        w = "hcloud."
        d = HcloudConfig  # defaults

        hcloud_table: dict[str, Any] = table

        def seconds(key: str) -> float:
            return _get(hcloud_table, key, float, w, float(getattr(d, key)))

        hcloud_cfg = HcloudConfig(
            token=read_token(Path(_get(table, "token_file", str, w))),
            floating_ip_id=_get(table, "floating_ip_id", int, w),
            server_id=_opt(table, "server_id", int, w),
            server_name=_get(table, "server_name", str, w, socket.gethostname()),
            endpoint=os.environ.get("NGD_VIP_HCLOUD_ENDPOINT") or _get(table, "endpoint", str, w, d.endpoint),
            deadline_seconds=seconds("deadline_seconds"),
            request_timeout_seconds=seconds("request_timeout_seconds"),
            backoff_base_seconds=seconds("backoff_base_seconds"),
            backoff_cap_seconds=seconds("backoff_cap_seconds"),
            poll_interval_seconds=seconds("poll_interval_seconds"),
        )
        if hcloud_cfg.deadline_seconds <= 0:
            raise ConfigError("hcloud.deadline_seconds must be > 0")

    aws_cfg = None
    if provider == "aws":
        table = data.get("aws")
        if not isinstance(table, dict):
            raise ConfigError("provider aws needs an [aws] table with region, allocation_id, instance_id")
        w = "aws."
        aws_cfg = AwsConfig(
            region=_get(table, "region", str, w),
            allocation_id=_get(table, "allocation_id", str, w),
            instance_id=_get(table, "instance_id", str, w),
            endpoint_url=_opt(table, "endpoint_url", str, w),
            max_attempts=_get(table, "max_attempts", int, w, AwsConfig.max_attempts),
        )

    return Config(
        path=path,
        provider=provider,
        metrics_dir=metrics_dir,
        vip=vip,
        vip_prefix=vip_prefix,
        interface=interface,
        manage_interface=manage_interface,
        ip_command=_get(data, "ip_command", str, "", "ip"),
        hcloud=hcloud_cfg,
        aws=aws_cfg,
    )
