"""Gateway configuration: one TOML file plus a secrets file (mode 0600) or environment variables.

Every error is a `ConfigError` that names the key and the expected form; the typed readers that
raise them are in `config_readers`, shared with `delivery_config`, which validates the delivery
sections (`spool`, `sinks`, `routes`, `peer`). See docs/configuration.md.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_readers import (
    parse_model_id,
    parse_secret_hex,
    read_bool,
    read_choice,
    read_float,
    read_host,
    read_int,
    read_networks,
    read_str,
    read_table,
    reject_unknown,
)
from .delivery_config import parse_delivery_config
from .errors import ConfigError
from .keys import MIN_MASTER_SECRET_BYTES
from .verifier import ModelSpec

DELIVERY_SECTIONS = ("spool", "sinks", "routes", "peer")
CORE_SECTIONS = ("server", "protocol", "state", "log", "models", "secrets")
# Defaults mirror ansible/group_vars/all/ports.yml; deployments template the real values from there.
DEFAULT_DATA_PORT = 5680
DEFAULT_METRICS_PORT = 5679
PROXY_MODES = ("off", "v1", "v2", "any")
MODEL_SECRET_ENV = "NANOGRIDATA_SECRET_MODEL_{:02X}"  # e.g. NANOGRIDATA_SECRET_MODEL_10
SECRETS_FILE_ENV = "NANOGRIDATA_SECRETS_FILE"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_host: str = "0.0.0.0"
    data_port: int = DEFAULT_DATA_PORT
    metrics_host: str = "0.0.0.0"
    metrics_port: int = DEFAULT_METRICS_PORT
    proxy_protocol: str = "off"
    max_connections: int = 20_000
    max_connections_per_source: int = 2000  # by client address (PROXY-declared behind nginx); 0 = no limit
    idle_timeout_s: float = 300.0
    frame_timeout_s: float = 10.0  # a started frame (or the PROXY header) must be complete by then
    rate_limit_per_s: float = 100.0  # frames per second per connection; 0 = no limit
    rate_limit_burst: int = 200
    max_buffer_bytes: int = 1 << 20  # unparsed bytes held per connection
    max_write_buffer_bytes: int = 64 << 10  # ACKs queued for a device before reading stops
    write_stall_timeout_s: float = 30.0  # reading stopped that long for unread ACKs: connection closed
    max_inflight: int = 256  # frames per connection awaiting the store before reading pauses
    workers: int = 1
    reuse_port: bool = False
    drain_timeout_s: float = 20.0
    # who may POST /drain (CIDRs); the other endpoints only read
    drain_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    max_age_s: float = 86_400.0
    future_skew_s: float = 60.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig
    protocol: ProtocolConfig
    state_dir: str
    log: LogConfig
    models: Mapping[int, ModelSpec]
    # spool/sinks/routes/peer as read (secrets merged in); parsed by delivery_config
    delivery_raw: Mapping[str, Any] = field(default_factory=dict)
    # a DeliveryConfig; None with load_config(parse_delivery=False). Typed Any so that the store
    # factories, which run only on a parsed config, need no None check.
    delivery: Any = None


# --- sections -----------------------------------------------------------------------------


def _parse_server(raw: Any) -> ServerConfig:
    t = read_table(raw, "server")
    d = ServerConfig()
    reject_unknown(t, "server", set(ServerConfig.__slots__))
    cfg = ServerConfig(
        data_host=read_host(t, "server", "data_host", d.data_host),
        data_port=read_int(t, "server", "data_port", d.data_port, 0, 65535),
        metrics_host=read_host(t, "server", "metrics_host", d.metrics_host),
        metrics_port=read_int(t, "server", "metrics_port", d.metrics_port, 0, 65535),
        proxy_protocol=read_choice(t, "server", "proxy_protocol", d.proxy_protocol, PROXY_MODES),
        max_connections=read_int(t, "server", "max_connections", d.max_connections, 1, 1_000_000),
        max_connections_per_source=read_int(
            t, "server", "max_connections_per_source", d.max_connections_per_source, 0, 1_000_000
        ),
        idle_timeout_s=read_float(t, "server", "idle_timeout_s", d.idle_timeout_s, 1, 86_400),
        frame_timeout_s=read_float(t, "server", "frame_timeout_s", d.frame_timeout_s, 0.1, 3600),
        rate_limit_per_s=read_float(t, "server", "rate_limit_per_s", d.rate_limit_per_s, 0, 1_000_000),
        rate_limit_burst=read_int(t, "server", "rate_limit_burst", d.rate_limit_burst, 1, 1_000_000),
        max_buffer_bytes=read_int(t, "server", "max_buffer_bytes", d.max_buffer_bytes, 4096, 64 << 20),
        max_write_buffer_bytes=read_int(
            t, "server", "max_write_buffer_bytes", d.max_write_buffer_bytes, 4096, 64 << 20
        ),
        write_stall_timeout_s=read_float(
            t, "server", "write_stall_timeout_s", d.write_stall_timeout_s, 0.1, 3600
        ),
        max_inflight=read_int(t, "server", "max_inflight", d.max_inflight, 1, 100_000),
        workers=read_int(t, "server", "workers", d.workers, 1, 256),
        reuse_port=read_bool(t, "server", "reuse_port", d.reuse_port),
        drain_timeout_s=read_float(t, "server", "drain_timeout_s", d.drain_timeout_s, 0, 3600),
        drain_allow=read_networks(t, "server", "drain_allow", d.drain_allow),
    )
    if cfg.workers > 1:
        # The kernel spreads connections, not devices, and each process has its own replay
        # windows: a retransmission landing on another worker would be stored (and ACKed) again,
        # a clockless frame with a second timestamp, i.e. a second point in an influx_line sink.
        raise ConfigError(
            "server.workers",
            f"{cfg.workers} worker processes would not share their replay windows"
            " (a retransmitted frame landing on another worker is stored twice)",
            "workers = 1: one gateway process per host; add hosts to scale out",
        )
    if cfg.data_port and cfg.data_port == cfg.metrics_port:
        raise ConfigError("server.metrics_port", "same as server.data_port", "two different ports")
    return cfg


def _parse_protocol(raw: Any) -> ProtocolConfig:
    t = read_table(raw, "protocol")
    d = ProtocolConfig()
    reject_unknown(t, "protocol", set(ProtocolConfig.__slots__))
    return ProtocolConfig(
        max_age_s=read_float(t, "protocol", "max_age_s", d.max_age_s, 1, 366 * 86_400),
        future_skew_s=read_float(t, "protocol", "future_skew_s", d.future_skew_s, 0, 3600),
    )


def _parse_log(raw: Any) -> LogConfig:
    t = read_table(raw, "log")
    reject_unknown(t, "log", {"level", "format"})
    return LogConfig(
        level=read_choice(t, "log", "level", "info", ("debug", "info", "warning", "error")),
        format=read_choice(t, "log", "format", "json", ("json", "text")),
    )


def _parse_models(raw: Any, env: Mapping[str, str], require_secrets: bool) -> dict[int, ModelSpec]:
    t = read_table(raw, "models")
    if not t:
        raise ConfigError("models", "no model configured", 'at least one [models."0x10"] table')
    models: dict[int, ModelSpec] = {}
    for model_text, model_raw in t.items():
        key = f"models.{model_text}"
        model = parse_model_id(str(model_text), key)
        if model in models:
            raise ConfigError(key, "model configured twice", "each model id once")
        mt = read_table(model_raw, key)
        reject_unknown(mt, key, {"name", "security", "master_secret"})
        env_name = MODEL_SECRET_ENV.format(model)
        secret_value = mt.get("master_secret", env.get(env_name))
        if secret_value is None and not require_secrets:
            secret = b""
        else:
            if secret_value is None:
                raise ConfigError(
                    f"{key}.master_secret",
                    f"missing (secrets file or ${env_name})",
                    f"at least {MIN_MASTER_SECRET_BYTES} random bytes as hex",
                )
            secret = parse_secret_hex(secret_value, f"{key}.master_secret")
        models[model] = ModelSpec(
            model_id=model,
            master_secret=secret,
            high_security=read_choice(mt, key, "security", "normal", ("normal", "high")) == "high",
            name=read_str(mt, key, "name", f"model-{model:#04x}"),
        )
    return models


# --- files --------------------------------------------------------------------------------


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(what, f"file not found: {path}", "a readable TOML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            what, f"{path}: not UTF-8 text (byte {exc.start} of the file)", "a UTF-8 encoded TOML file"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(what, f"{path}: TOML syntax error: {exc}", "valid TOML") from None
    except RecursionError:
        raise ConfigError(what, f"{path}: arrays or tables nested too deeply", "valid TOML") from None
    except OSError as exc:
        raise ConfigError(what, f"{path}: {exc.strerror}", "a readable TOML file") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise ConfigError(what, f"{path!s:.200}: {exc}", "a path to a readable TOML file") from None


def read_secrets_file(path: Path) -> dict[str, Any]:
    """The secrets file must not be readable or writable by group or others (mode 0600/0400)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError("secrets.file", f"file not found: {path}", "a TOML file with mode 0600") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise ConfigError(
            "secrets.file",
            f"{path!s:.200}: {getattr(exc, 'strerror', None) or exc}",
            "a TOML file with mode 0600",
        ) from None
    if not stat.S_ISREG(mode):  # a FIFO or a device would block the read or never end it
        raise ConfigError("secrets.file", f"{path} is not a regular file", "a TOML file with mode 0600")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "secrets.file",
            f"{path} has mode {stat.S_IMODE(mode):04o}",
            f"mode 0600 or 0400 (chmod 600 {path})",
        )
    data = _read_toml(path, "secrets.file")
    reject_unknown(data, "", {"models", "peer"})
    for model_text, table in read_table(data.get("models", {}), "models").items():
        reject_unknown(read_table(table, f"models.{model_text}"), f"models.{model_text}", {"master_secret"})
    reject_unknown(read_table(data.get("peer", {}), "peer"), "peer", {"secret"})
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for name, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(name), dict):
            _merge(base[name], value)
        elif isinstance(value, Mapping):
            base[name] = dict(value)
        else:
            base[name] = value


def _check_shape(raw: Mapping[str, Any]) -> None:
    """The tables that the secrets file is merged into must be tables in both files: merging
    would otherwise replace a wrong value silently, or fail on it."""
    for model_text, table in read_table(raw.get("models", {}), "models").items():
        read_table(table, f"models.{model_text}")
    if "peer" in raw:
        read_table(raw["peer"], "peer")


def _refuse_inline_secrets(raw: Mapping[str, Any]) -> None:
    for model_text, table in read_table(raw.get("models", {}), "models").items():
        if isinstance(table, Mapping) and "master_secret" in table:
            raise ConfigError(
                f"models.{model_text}.master_secret",
                "secrets do not belong in the config file",
                f"the secrets file (mode 0600) or ${MODEL_SECRET_ENV.format(0x10)}-style variables",
            )
    peer = raw.get("peer")
    if isinstance(peer, Mapping) and "secret" in peer:
        raise ConfigError(
            "peer.secret",
            "secrets do not belong in the config file",
            "the secrets file (mode 0600) or $NANOGRIDATA_PAIR_SECRET",
        )


def load_config(
    path: str | os.PathLike[str],
    secrets_path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_secrets: bool = True,
    parse_delivery: bool = True,
) -> GatewayConfig:
    """Read, merge and validate the config. `require_secrets=False` lets tools skip the secrets."""
    env = os.environ if env is None else env
    raw = _read_toml(Path(path), "config")
    reject_unknown(raw, "", set(CORE_SECTIONS) | set(DELIVERY_SECTIONS))
    _check_shape(raw)
    _refuse_inline_secrets(raw)
    secrets_table = read_table(raw.get("secrets", {}), "secrets")
    reject_unknown(secrets_table, "secrets", {"file"})
    secrets_file = secrets_path or env.get(SECRETS_FILE_ENV) or secrets_table.get("file")
    if secrets_file is not None:
        if not isinstance(secrets_file, (str, os.PathLike)):
            raise ConfigError("secrets.file", f"bad value {secrets_file!r}", "a path")
        _merge(raw, read_secrets_file(Path(secrets_file)))
    cfg = GatewayConfig(
        server=_parse_server(raw.get("server", {})),
        protocol=_parse_protocol(raw.get("protocol", {})),
        state_dir=read_str(read_table(raw.get("state", {}), "state"), "state", "dir", "/var/lib/nanogridata"),
        log=_parse_log(raw.get("log", {})),
        models=_parse_models(raw.get("models", {}), env, require_secrets),
        delivery_raw={k: raw[k] for k in DELIVERY_SECTIONS if k in raw},
    )
    reject_unknown(read_table(raw.get("state", {}), "state"), "state", {"dir"})
    if parse_delivery:
        cfg = _with_delivery(cfg, env)
    return cfg


def _with_delivery(cfg: GatewayConfig, env: Mapping[str, str]) -> GatewayConfig:
    delivery = parse_delivery_config(cfg.delivery_raw, env)
    return GatewayConfig(
        cfg.server, cfg.protocol, cfg.state_dir, cfg.log, cfg.models, cfg.delivery_raw, delivery
    )
