"""`nanogridata-gateway`: check-config, serve, keygen, derive-key."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from . import __version__
from .config import GatewayConfig, load_config
from .config_readers import parse_model_id, parse_secret_hex
from .errors import ConfigError
from .keys import MAX_SECRET_BYTES, MIN_MASTER_SECRET_BYTES, derive_device_key, new_master_secret
from .logs import setup_logging

log = logging.getLogger("nanogridata.cli")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", default="/etc/nanogridata/gateway.toml", help="TOML config file")
    p.add_argument(
        "--secrets",
        help="secrets TOML file, mode 0600 (default: [secrets] file in the config, "
        "or $NANOGRIDATA_SECRETS_FILE; model secrets may also come from "
        "$NANOGRIDATA_SECRET_MODEL_<HEX>)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nanogridata-gateway", description="Nanogridata ingest gateway.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-config", help="validate the config and secrets; exit 2 naming the bad key")
    _add_config_args(p)
    p.add_argument("--no-secrets", action="store_true", help="do not require model secrets (templates, CI)")
    p = sub.add_parser("serve", help="run the gateway until SIGTERM (then drain and exit 0)")
    _add_config_args(p)
    p = sub.add_parser("keygen", help="print a new random model master secret (hex)")
    p.add_argument("--bytes", type=int, default=32, help="secret length in bytes (32 to 1024)")
    p = sub.add_parser("derive-key", help="print a device key for provisioning (hex)")
    p.add_argument("--model", required=True, help="model id, e.g. 0x10")
    p.add_argument("--device", required=True, help="device id, e.g. 0x00000001 or 17")
    p.add_argument("--secret-hex", help="the model master secret; default: read it from the config/secrets")
    _add_config_args(p)
    return ap


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.secrets, require_secrets=not args.no_secrets)
    if cfg.delivery is not None:
        from .delivery import check_spool  # noqa: PLC0415 - only when there is a delivery config

        check_spool(cfg.delivery)  # serve would refuse a spool that owes records to a removed sink
    summary = {
        "config": str(args.config),
        "data": f"{cfg.server.data_host}:{cfg.server.data_port}",
        "metrics": f"{cfg.server.metrics_host}:{cfg.server.metrics_port}",
        "proxy_protocol": cfg.server.proxy_protocol,
        "models": {
            f"0x{m:02x}": {"name": s.name, "security": "high" if s.high_security else "normal"}
            for m, s in cfg.models.items()
        },
        "sinks": sorted(getattr(cfg.delivery, "sinks", {}) or {}),
    }
    print(json.dumps({"ok": True, **summary}, indent=1))
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        print(new_master_secret(args.bytes).hex())
    except ValueError as exc:
        raise ConfigError("--bytes", str(exc), f"{MIN_MASTER_SECRET_BYTES} to {MAX_SECRET_BYTES}") from None
    return 0


def cmd_derive_key(args: argparse.Namespace) -> int:
    model = parse_model_id(args.model, "--model", "--model 0x10")
    try:
        device = int(args.device, 0)
    except ValueError:
        device = -1
    if not 0 <= device <= 0xFFFFFFFF:
        raise ConfigError("--device", f"bad device id {args.device!r}", "0 .. 0xffffffff")
    if args.secret_hex:
        secret = parse_secret_hex(args.secret_hex, "--secret-hex")
    else:
        cfg = load_config(args.config, args.secrets, parse_delivery=False)
        if model not in cfg.models:
            raise ConfigError(f"models.0x{model:02x}", "not configured", "a [models] table for this model")
        secret = cfg.models[model].master_secret
    print(derive_device_key(secret, model, device).hex())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    # aiohttp's signal lists are frozenlist FrozenLists: filled at start-up, not touched per
    # frame or per delivery. frozenlist's compiled extension is C++ and maps libstdc++, about
    # 1 MB resident for that list type; the library's own pure-Python FrozenList, chosen by its
    # FROZENLIST_NO_EXTENSIONS switch (read when frozenlist is imported, i.e. when the sinks
    # are built, after this), does the same job. An operator's own setting of it wins.
    os.environ.setdefault("FROZENLIST_NO_EXTENSIONS", "1")
    cfg = load_config(args.config, args.secrets)
    setup_logging(cfg.log.level, cfg.log.format)
    return _serve_one(cfg)


def _serve_one(cfg: GatewayConfig) -> int:
    from .app import Gateway, install_uvloop  # noqa: PLC0415 - keep check-config light

    uv = install_uvloop()
    log.info("starting", extra={"version": __version__, "uvloop": uv, "pid": os.getpid()})

    async def main() -> int:
        return await Gateway(cfg).run()

    try:
        return asyncio.run(main())
    except OSError as exc:  # e.g. a port already in use, an unwritable state directory
        log.error("cannot start: %s", exc)
        print(f"nanogridata-gateway: cannot start: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {
        "check-config": cmd_check_config,
        "serve": cmd_serve,
        "keygen": cmd_keygen,
        "derive-key": cmd_derive_key,
    }
    try:
        return commands[args.command](args)
    except ConfigError as exc:
        print(f"nanogridata-gateway: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
