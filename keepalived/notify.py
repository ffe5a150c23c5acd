#!/usr/bin/python3
"""keepalived notify script and periodic VIP reconcile check (Nanogridata HA gateway).

keepalived calls it as ``notify.py [--config PATH] INSTANCE|GROUP NAME STATE [PRIORITY]``
(STATE: MASTER, BACKUP, FAULT, STOP, MASTER_RX_LOWER_PRI). For an INSTANCE it
  1. writes the node-exporter textfile metrics of docs/metrics.md (atomically),
  2. calls the provider hook: MASTER/MASTER_RX_LOWER_PRI -> take the VIP over in the cloud
     (hcloud: assign the floating IP, wait for the action; aws: associate the EIP; none: nothing),
     other states -> drop the VIP from the interface (cloud providers with manage_interface),
  3. logs one JSON line per event to stderr and to syslog/journald (/dev/log) when present.
GROUP notifications are logged only. Exit status: 0 done, 1 provider failed (counted in
keepalived_vip_provider_errors_total), 2 bad arguments or configuration.

``notify.py [--config PATH] reconcile --instance NAME`` is the periodic check (a keepalived vrrp_script or a
timer): when the last recorded state is MASTER but the cloud routes the VIP elsewhere it moves it
back (``--no-fix``: only report); exit 1 when that is not possible, so a track script with
``weight 0`` puts the node in FAULT. It also refreshes the metrics file's mtime.

See keepalived/README.md for the configuration keys (/etc/nanogridata/vip.toml).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ngd_vip import config as config_mod
from ngd_vip.base import ConfigError, Provider, ProviderError, SupersededError
from ngd_vip.interface import InterfaceManager
from ngd_vip.metrics import STATE_VALUES, MetricsFile, notify_order

log = logging.getLogger("ngd-vip")
EXIT_OK, EXIT_PROVIDER, EXIT_USAGE = 0, 1, 2
NOTIFY_STATES = ("MASTER", "BACKUP", "FAULT", "STOP", "MASTER_RX_LOWER_PRI")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: journald keeps it whole, jq reads it."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, sort_keys=True)


def setup_logging() -> None:
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):  # main() may run more than once in one process (tests)
        log.removeHandler(handler)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(JsonFormatter())
    log.addHandler(stderr)
    # keepalived drops its scripts' stderr, so the journal (via /dev/log) is where these land;
    # NGD_VIP_LOG_FILE (inherited from keepalived's environment) adds a file, for drills and tests.
    log_file = os.environ.get("NGD_VIP_LOG_FILE")
    if log_file:
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(JsonFormatter())
        log.addHandler(to_file)
    if os.environ.get("NGD_VIP_SYSLOG", "1") == "1" and Path("/dev/log").exists():
        try:
            syslog = logging.handlers.SysLogHandler(address="/dev/log")
            syslog.ident = "ngd-vip-notify: "
            syslog.setFormatter(JsonFormatter())
            log.addHandler(syslog)
        except OSError:
            pass


def event(level: int, msg: str, **fields: object) -> None:
    log.log(level, msg, extra={"fields": fields})


def make_interface(cfg: config_mod.Config) -> InterfaceManager | None:
    """Cloud providers only: in L2 mode (none) keepalived owns the address."""
    if cfg.provider != "none" and cfg.manage_interface and cfg.vip and cfg.interface:
        return InterfaceManager(cfg.vip, cfg.vip_prefix, cfg.interface, cfg.ip_command)
    return None


def make_provider(cfg: config_mod.Config) -> Provider:
    interface = make_interface(cfg)
    if cfg.provider == "hcloud" and cfg.hcloud is not None:
        from ngd_vip.hcloud import HcloudProvider

        return HcloudProvider(cfg.hcloud, interface)
    if cfg.provider == "aws" and cfg.aws is not None:
        from ngd_vip.aws import AwsProvider

        return AwsProvider(cfg.aws)
    from ngd_vip.none import NoneProvider

    return NoneProvider()


class ProviderLock:
    """One cloud move at a time per host; reconcile skips instead of queueing."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.handle = open(directory / ".keepalived_provider.lock", "a", encoding="utf-8")  # noqa: SIM115

    def acquire(self, wait: bool) -> bool:
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def still_master_check(cfg: config_mod.Config, metrics: MetricsFile) -> Callable[[], bool]:
    """Is this node still MASTER? The metrics file says what the last notify recorded, but a
    BACKUP notify may still be starting. When keepalived itself carries the VIP
    (virtual_ipaddress, manage_interface = false) the address on the interface is its own
    state, updated in-process the moment it leaves MASTER: check that too."""
    keepalived_address = None
    if cfg.provider != "none" and not cfg.manage_interface and cfg.vip and cfg.interface:
        keepalived_address = InterfaceManager(cfg.vip, cfg.vip_prefix, cfg.interface, cfg.ip_command)

    def check() -> bool:
        if metrics.current().state != STATE_VALUES["MASTER"]:
            return False
        return keepalived_address is None or keepalived_address.is_present()

    return check


def take_over(cfg: config_mod.Config, metrics: MetricsFile, instance: str) -> int:
    lock = ProviderLock(cfg.metrics_dir)
    lock.acquire(wait=True)
    started = time.monotonic()
    try:
        provider = make_provider(cfg)
        provider.take_over(still_master=still_master_check(cfg, metrics))
    except SupersededError as exc:
        event(
            logging.WARNING,
            "take-over abandoned: state changed meanwhile",
            instance=instance,
            provider=cfg.provider,
            reason=str(exc),
        )
        return EXIT_OK
    except ProviderError as exc:
        m = metrics.count_provider_error()
        event(
            logging.ERROR,
            "VIP take-over failed",
            instance=instance,
            provider=cfg.provider,
            error=str(exc),
            seconds=round(time.monotonic() - started, 3),
            provider_errors_total=m.provider_errors[cfg.provider],
        )
        return EXIT_PROVIDER
    finally:
        lock.release()
    event(
        logging.INFO,
        "VIP routed here",
        instance=instance,
        provider=cfg.provider,
        seconds=round(time.monotonic() - started, 3),
    )
    return EXIT_OK


def cmd_notify(config_path: Path | None, kind: str, name: str, state: str, priority: str | None) -> int:
    if kind == "GROUP":
        event(logging.INFO, "sync group state", group=name, state=state)
        return EXIT_OK
    cfg = config_mod.load(config_path)
    metrics = MetricsFile(cfg.metrics_dir, name, cfg.provider)
    written, changed, stale = metrics.record_state(state, order=notify_order())
    if stale:
        event(
            logging.WARNING,
            "stale notification ignored: a later one was already recorded",
            instance=name,
            state=state,
            recorded_state=written.state,
        )
        return EXIT_OK
    event(
        logging.INFO,
        "VRRP state",
        instance=name,
        state=state,
        priority=priority,
        value=written.state,
        transition=changed,
        transitions_total=written.transitions,
    )
    if state in ("MASTER", "MASTER_RX_LOWER_PRI"):
        return take_over(cfg, metrics, name)
    # Leaving MASTER: only the local address goes (the new master moves the cloud IP). No provider
    # import here: keepalived kills a STOP notify after 1 s, and importing hcloud takes ~0.7 s.
    try:
        interface = make_interface(cfg)
        if interface is not None:
            interface.ensure_absent()
    except ProviderError as exc:
        event(logging.ERROR, "VIP release failed", instance=name, provider=cfg.provider, error=str(exc))
        return EXIT_PROVIDER
    return EXIT_OK


def cmd_reconcile(config_path: Path | None, instance: str, fix: bool) -> int:
    cfg = config_mod.load(config_path)
    metrics = MetricsFile(cfg.metrics_dir, instance, cfg.provider)
    current = metrics.refresh()
    if current.state != STATE_VALUES["MASTER"] or cfg.provider == "none":
        return EXIT_OK
    lock = ProviderLock(cfg.metrics_dir)
    if not lock.acquire(wait=False):
        event(logging.INFO, "reconcile skipped: a take-over is in progress", instance=instance)
        return EXIT_OK
    try:
        provider = make_provider(cfg)
        try:
            if provider.routed_here():
                return EXIT_OK
        except ProviderError as exc:
            # Cannot tell: do not put a possibly healthy master into FAULT over an API hiccup.
            event(
                logging.WARNING,
                "reconcile could not read the cloud state",
                instance=instance,
                provider=cfg.provider,
                error=str(exc),
            )
            return EXIT_OK
        event(
            logging.WARNING,
            "MASTER but the cloud routes the VIP elsewhere",
            instance=instance,
            provider=cfg.provider,
            fix=fix,
        )
    finally:
        lock.release()
    if not fix:
        return EXIT_PROVIDER
    return take_over(cfg, metrics, instance)


def parse_args(argv: list[str]) -> argparse.Namespace:
    # "--config PATH" may lead (keepalived appends its own arguments after the configured ones).
    config_path = None
    if argv[:1] == ["--config"]:
        if len(argv) < 2:
            raise SystemExit("notify.py: --config needs a path")
        config_path, argv = Path(argv[1]), argv[2:]
    if argv and argv[0] == "reconcile":
        parser = argparse.ArgumentParser(prog="notify.py reconcile", description="Periodic VIP check.")
        parser.add_argument("--instance", required=True, help="VRRP instance name (as in keepalived.conf)")
        parser.add_argument(
            "--no-fix", dest="fix", action="store_false", help="report (exit 1) instead of fixing"
        )
        ns = parser.parse_args(argv[1:])
        ns.command = "reconcile"
    else:
        parser = argparse.ArgumentParser(
            prog="notify.py [--config PATH]",
            description=__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("kind", choices=("INSTANCE", "GROUP"))
        parser.add_argument("name")
        parser.add_argument("state", choices=NOTIFY_STATES)
        parser.add_argument("priority", nargs="?")
        ns = parser.parse_args(argv)
        ns.command = "notify"
    ns.config = config_path
    return ns


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    try:
        if args.command == "reconcile":
            return cmd_reconcile(args.config, args.instance, args.fix)
        return cmd_notify(args.config, args.kind, args.name, args.state, args.priority)
    except ConfigError as exc:
        event(logging.ERROR, "configuration error", error=str(exc))
        return EXIT_USAGE
    except Exception as exc:  # keepalived discards stderr: a traceback must reach the log
        log.exception("unexpected error", extra={"fields": {"error": repr(exc)}})
        return EXIT_PROVIDER


if __name__ == "__main__":
    sys.exit(main())
