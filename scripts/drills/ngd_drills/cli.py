"""Run drills: `python -m ngd_drills SCENARIO|all --env lab` (scripts/drill.sh wraps this with the
production guards). One fault at a time: each scenario heals and verifies the pair is whole
again before the next one starts; a scenario that cannot heal stops the run."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .env import REPO_ROOT, DrillError, Executor, Inventory, load_inventory, make_executor
from .observe import AlertRecorder, active_alerts, count_stored
from .scenarios import SCENARIOS, Roles, Scenario
from .vip import VipWatcher

# Targets of the HA issue (measured in the lab); per-scenario ones are in scenarios.py.
TARGET_SPLIT_BRAIN_ALERT_S = 60.0
# After a split brain heals, clients whose ARP entry names the node that let go of the VIP are cut
# off until a gratuitous ARP reaches them (keepalived_vrrp_garp_master_refresh, 5 s) and their
# ACK timeout (2 s) makes them reconnect. Without the refresh this was 13 s (measured).
TARGET_PARTITION_RECONNECT_P99_MS = 10_000.0
SPLIT_BRAIN_ALERT = "KeepalivedSplitBrain"
PAYLOAD_FIELD = "p"  # the simulator's "pressure" profile: one point of *_p per frame
SERVICES = "keepalived nginx nanogridata-gateway"
VRRP_TEXTFILES = "/var/lib/prometheus/node-exporter/keepalived*.prom"  # docs/metrics.md


@dataclass
class TrafficPlan:
    """Traffic runs from warmup_s before the fault until the pair is whole again after healing
    plus settle_s, and at least duration_s in all (at most max_s: the simulator's own bound)."""

    devices: int
    rate: float
    duration_s: float
    warmup_s: float = 5.0
    settle_s: float = 3.0
    drain_s: float = 20.0
    max_s: float = 400.0


@dataclass
class Target:
    name: str
    ok: bool
    detail: str


@dataclass
class ScenarioResult:
    scenario: str
    env: str
    started_utc: str
    master: str
    backup: str
    fault: str
    vip_holder_before: list[str]
    vip_holder_after: list[str]
    vip_move_s: float | None = None
    vip_released_s: float | None = None  # when the old master lost the VIP (stop or host down)
    vip_moved: bool = False
    max_vip_holders: int = 0
    split_brain_alert_s: float | None = None
    heal_s: float | None = None
    vrrp_states_after: dict[str, int | None] = field(default_factory=dict)
    alerts: dict[str, float] = field(default_factory=dict)  # first seen active, s after the fault
    alerts_resolved: dict[str, float] = field(default_factory=dict)  # gone again, s after the fault
    alertmanager_reachable: bool = False
    sim: dict[str, Any] = field(default_factory=dict)
    device_base: int = 0
    stored: int | None = None
    sink_duplicate_points: int | None = None
    acked_missing: int | None = None
    targets: list[Target] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.ok for t in self.targets)


def log(message: str) -> None:
    print(f"{datetime.now(UTC).strftime('%H:%M:%S')} [drill] {message}", flush=True)


class Drill:
    def __init__(self, inventory: Inventory, executor: Executor, plan: TrafficPlan) -> None:
        self.inv = inventory
        self.ex = executor
        self.plan = plan
        self.gateways = inventory.gateways
        self.vip = str(inventory.var(self.gateways[0], "ngd_vip"))
        self.interface = str(inventory.var(self.gateways[0], "ngd_vip_interface"))
        self.mon = inventory.first("monitoring")
        self.collector = inventory.first("collectors")

    # --- the pair's state ------------------------------------------------------------------
    def services_ok(self, host: str) -> bool:
        port = self.inv.ports["ngd_gateway_metrics_port"]
        ready = f"curl -fsS --max-time 2 http://127.0.0.1:{port}/ready >/dev/null"
        return self.ex.run(host, f"systemctl is-active -q {SERVICES} && {ready}", 10).rc == 0

    def vrrp_state(self, host: str) -> int | None:
        """keepalived_vrrp_state from the notify script's textfile: 1 BACKUP, 2 MASTER, 3 FAULT."""
        out = self.ex.run(host, f"cat {VRRP_TEXTFILES} 2>/dev/null", 10).stdout
        for line in out.splitlines():
            if line.startswith("keepalived_vrrp_state{"):
                return int(float(line.rsplit(" ", 1)[1]))
        return None

    def wait_whole(self, watcher: VipWatcher, timeout: float) -> tuple[bool, str]:
        """Both hosts up, their services active and ready, one MASTER and one BACKUP (a backup
        in FAULT could not take over), exactly one VIP holder."""
        deadline = time.monotonic() + timeout
        why = ""
        while time.monotonic() < deadline:
            down = [h for h in self.gateways if not self.ex.host_running(h)]
            bad = [h for h in self.gateways if h not in down and not self.services_ok(h)]
            holders = watcher.holders()
            states = sorted(self.vrrp_state(h) or 0 for h in self.gateways if h not in down)
            if not down and not bad and len(holders) == 1 and states == [1, 2]:
                return True, ""
            why = (
                f"hosts down {down}, services not ready {bad}, VIP holders {holders}, "
                f"VRRP states {states} (want [1, 2]: BACKUP, MASTER)"
            )
            time.sleep(1)
        return False, why

    def secret_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.inv.env == "lab" and "NANOGRIDATA_SECRET_MODEL_10" not in env:
            raw = subprocess.run(
                [str(REPO_ROOT / "scripts" / "lab.sh"), "secret", "gateway-model-0x10"],
                capture_output=True,
                check=True,
                timeout=60,
            ).stdout
            env["NANOGRIDATA_SECRET_MODEL_10"] = hashlib.sha256(raw).hexdigest()
        if "NANOGRIDATA_SECRET_MODEL_10" not in env and self.inv.gateways:
            # Outside the lab the gateways' own secret: the vault's, read with the inventory.
            secrets = self.inv.hostvars.get(self.inv.gateways[0], {}).get("vault_gateway_model_secrets")
            secret = secrets.get("0x10") if isinstance(secrets, dict) else None
            if isinstance(secret, str) and secret:
                env["NANOGRIDATA_SECRET_MODEL_10"] = secret
        if "NANOGRIDATA_SECRET_MODEL_10" not in env:
            raise DrillError(
                "set NANOGRIDATA_SECRET_MODEL_10 (the hex master secret of model 0x10) for the simulator, or "
                "keep it in the inventory's vault (vault_gateway_model_secrets, read with the vault password)"
            )
        return env

    # --- one scenario --------------------------------------------------------------------------
    def run(self, scenario: Scenario, logs_dir: Path) -> ScenarioResult:
        watcher = VipWatcher(self.ex, self.gateways, self.vip, self.interface)
        watcher.start()
        try:
            return self._run(scenario, watcher, logs_dir)
        finally:
            watcher.stop()

    def _run(self, scenario: Scenario, watcher: VipWatcher, logs_dir: Path) -> ScenarioResult:
        whole, why = self.wait_whole(watcher, 120)
        if not whole:
            raise DrillError(f"the pair is not whole before {scenario.name}: {why}")
        holders = watcher.holders()
        master = holders[0]
        backup = next(h for h in self.gateways if h != master)
        roles = Roles(master=master, backup=backup)
        result = ScenarioResult(
            scenario=scenario.name,
            env=self.inv.env,
            started_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            master=master,
            backup=backup,
            fault=scenario.summary,
            vip_holder_before=holders,
            vip_holder_after=[],
        )
        if scenario.needs_host_power and not self.ex.supports_host_power:
            raise DrillError(f"{scenario.name} needs to power hosts off and on: lab only")
        log(f"{scenario.name}: master {master}, backup {backup}; {scenario.summary}")
        stop_file = logs_dir / f"{scenario.name}-sim.stop"
        stop_file.unlink(missing_ok=True)

        if scenario.split_brain:
            # Still firing from an earlier split brain: this fault's alert could not be told apart.
            self.wait_alert_inactive(SPLIT_BRAIN_ALERT, 180)
        already = active_alerts(self.ex, self.mon, self.inv.ports["ngd_alertmanager_port"]) or []
        recorder = AlertRecorder(
            self.ex,
            self.mon,
            self.inv.ports["ngd_alertmanager_port"],
            ignore={str(a.get("labels", {}).get("alertname")) for a in already},
        )
        recorder.start()
        # Device ids of this run only: the sink count below cannot mix in other traffic.
        result.device_base = 100_000_000 + (int(time.time()) % 3_000_000) * 1000
        sim_out = logs_dir / f"{scenario.name}-sim.json"
        start_unix = int(time.time()) - 5
        sim = self.start_traffic(result.device_base, sim_out, stop_file)
        t_traffic = time.monotonic()
        injected = healed = False
        try:
            time.sleep(self.plan.warmup_s)
            if sim.poll() is not None:
                raise DrillError(
                    f"the simulator exited early: {sim_out.with_suffix('.err').read_text()[-400:]}"
                )
            t_fault = time.monotonic()
            log(f"{scenario.name}: injecting")
            injected = True
            scenario.inject(self.ex, roles)
            self.await_effect(scenario, roles, watcher, recorder, t_fault, result)
            log(f"{scenario.name}: healing")
            t_heal = time.monotonic()
            healed = True
            scenario.heal(self.ex, roles)
            whole, why = self.wait_whole(watcher, 180)
            result.heal_s = round(time.monotonic() - t_heal, 2)
            if not whole:
                result.error = f"not whole {result.heal_s}s after healing: {why}"
            result.vip_holder_after = watcher.holders()
            result.vrrp_states_after = {h: self.vrrp_state(h) for h in self.gateways}
            # Traffic on the healed pair for a moment, and at least the planned duration in all.
            time.sleep(max(self.plan.settle_s, t_traffic + self.plan.duration_s - time.monotonic()))
            stop_file.touch()
            result.max_vip_holders = watcher.max_holders_since(t_fault)
            result.vip_moved = any(e.holds and e.host == backup and e.t >= t_fault for e in watcher.events)
            released = [e.t for e in watcher.events if e.host == master and not e.holds]
            released = [t for t in released if t >= t_fault]
            if released:
                result.vip_released_s = round(released[0] - t_fault, 3)
            moved_at = watcher.first_hold_after(backup, t_fault)
            if moved_at is not None:
                result.vip_move_s = round(moved_at - t_fault, 3)
            result.sim = self.finish_traffic(sim, sim_out)
        finally:
            if injected and not healed:  # never leave a fault behind, whatever went wrong
                log(f"{scenario.name}: healing after an error")
                scenario.heal(self.ex, roles)
            if sim.poll() is None:
                sim.terminate()
                sim.wait(timeout=30)
            recorder.stop()
        result.alertmanager_reachable = recorder.reachable
        result.alerts = {n: round(t - t_fault, 1) for n, t in sorted(recorder.first_seen.items())}
        result.alerts_resolved = {n: round(t - t_fault, 1) for n, t in sorted(recorder.resolved.items())}
        if SPLIT_BRAIN_ALERT in recorder.first_seen:
            result.split_brain_alert_s = round(recorder.first_seen[SPLIT_BRAIN_ALERT] - t_fault, 1)
        self.count_sink(result, start_unix)
        result.targets = evaluate(scenario, result)
        return result

    def wait_alert_inactive(self, name: str, limit_s: float) -> None:
        port = self.inv.ports["ngd_alertmanager_port"]
        deadline = time.monotonic() + limit_s
        logged = False
        while True:
            alerts = active_alerts(self.ex, self.mon, port) or []
            if name not in {str(a.get("labels", {}).get("alertname")) for a in alerts}:
                return
            if time.monotonic() > deadline:
                raise DrillError(f"{name} is still active {limit_s:.0f}s after the pair was whole")
            if not logged:
                log(f"waiting for {name} (from an earlier fault) to resolve")
                logged = True
            time.sleep(2)

    def await_effect(
        self,
        scenario: Scenario,
        roles: Roles,
        watcher: VipWatcher,
        recorder: AlertRecorder,
        t_fault: float,
        result: ScenarioResult,
    ) -> None:
        if scenario.split_brain:
            # Until the alert fires (bounded), so "detected and alerted" is measured, not assumed.
            deadline = t_fault + TARGET_SPLIT_BRAIN_ALERT_S + 30
            while time.monotonic() < deadline and SPLIT_BRAIN_ALERT not in recorder.first_seen:
                time.sleep(0.5)
            return
        if scenario.vip_moves:
            deadline = t_fault + 15
            while time.monotonic() < deadline and watcher.first_hold_after(roles.backup, t_fault) is None:
                time.sleep(0.02)
            time.sleep(2)  # let the devices move over before healing
            return
        time.sleep(scenario.hold_s)

    # --- traffic ---------------------------------------------------------------------------
    def start_traffic(self, device_base: int, out: Path, stop_file: Path) -> subprocess.Popen[bytes]:
        """The gateway's simulator (this checkout's, gateway/src) through the VIP; it reports
        sent/acked/lost and reconnect times (lost connection -> first ACK) itself."""
        plan = self.plan
        cmd = [
            sys.executable, "-m", "nanogridata_gateway.sim", "--json",
            "--host", self.vip, "--port", str(self.inv.ports["ngd_device_port"]),
            "--model", "0x10", "--profile", "pressure",
            "--devices", str(plan.devices), "--rate", str(plan.rate),
            "--duration", str(plan.max_s), "--stop-file", str(stop_file),
            "--drain", str(plan.drain_s),
            "--device-base", str(device_base),
            "--state-file", str(out.with_suffix(".state")),
        ]  # fmt: skip
        log(
            f"traffic: {plan.devices} devices x {plan.rate / plan.devices:g} frames/s through "
            f"{self.vip}, until the pair is whole again (at least {plan.duration_s:g}s)"
        )
        env = self.secret_env()
        src = str(REPO_ROOT / "gateway" / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return subprocess.Popen(
            cmd,
            stdout=out.open("wb"),
            stderr=out.with_suffix(".err").open("wb"),
            env=env,
        )

    def finish_traffic(self, sim: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
        limit = self.plan.drain_s + 60
        try:
            sim.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            sim.terminate()
            raise DrillError(f"the simulator did not finish within {limit:g}s") from None
        text = out.read_text().strip()
        if not text:
            raise DrillError(f"the simulator printed no report: {out.with_suffix('.err').read_text()[-400:]}")
        report: dict[str, Any] = json.loads(text.splitlines()[-1])
        report["exit_code"] = sim.returncode
        return report

    def count_sink(self, result: ScenarioResult, start_unix: int) -> None:
        acked = int(result.sim.get("acked", 0))
        deadline = time.monotonic() + 60
        counted = None
        while time.monotonic() < deadline:
            counted = count_stored(
                self.ex,
                self.collector,
                self.inv.ports["ngd_victoriametrics_port"],
                result.device_base,
                self.plan.devices,
                PAYLOAD_FIELD,
                start_unix,
            )
            if counted is not None and counted[0] >= acked:
                break
            time.sleep(2)
        if counted is not None:
            result.stored, result.sink_duplicate_points = counted
            result.acked_missing = max(0, acked - counted[0])


def evaluate(scenario: Scenario, r: ScenarioResult) -> list[Target]:
    sim = r.sim
    targets = [
        Target(
            "traffic flowed (frames acked)",
            int(sim.get("acked") or 0) > 0,
            f"sent {sim.get('sent')}, acked {sim.get('acked')}, "
            f"failed connects {sim.get('connect_failures')}",
        ),
        Target(
            "0 acked frames missing at the sink",
            r.acked_missing == 0,
            f"acked {sim.get('acked')}, stored {r.stored}, missing {r.acked_missing}",
        ),
        Target(
            "every frame acked by the end",
            sim.get("lost") == 0 and sim.get("bad_acks") == 0,
            f"unacked {sim.get('lost')}, bad acks {sim.get('bad_acks')}",
        ),
        Target(
            "exactly one VIP holder after healing",
            len(r.vip_holder_after) == 1,
            f"{r.vip_holder_after}",
        ),
        Target(
            "exactly one MASTER after healing (the other BACKUP)",
            sorted(v or 0 for v in r.vrrp_states_after.values()) == [1, 2],
            "keepalived_vrrp_state "
            + (", ".join(f"{h}={v}" for h, v in sorted(r.vrrp_states_after.items())) or "unknown"),
        ),
    ]
    if scenario.vip_target_s is not None:
        targets.append(
            Target(
                f"VIP on the backup <= {scenario.vip_target_s:.1f} s",
                r.vip_move_s is not None and r.vip_move_s <= scenario.vip_target_s,
                f"{r.vip_move_s} s",
            )
        )
    elif scenario.vip_moves:
        targets.append(Target("VIP moved to the backup", r.vip_moved, f"{r.vip_move_s} s"))
    if not scenario.vip_moves and not scenario.split_brain:
        targets.append(
            Target(
                "VIP unchanged",
                not r.vip_moved and r.max_vip_holders == 1,
                f"max holders {r.max_vip_holders}",
            )
        )
    if scenario.reconnect_p99_ms is not None:
        rc = sim.get("reconnect_ms") or {}
        p99 = rc.get("p99")
        bound = scenario.reconnect_p99_ms
        targets.append(
            Target(
                f"devices reconnected <= {bound:g} ms p99",
                bool(rc.get("count")) and p99 is not None and p99 <= bound,
                f"p50 {rc.get('p50')} / p99 {p99} ms (lost -> first ACK) over {rc.get('count')} "
                f"reconnects, {rc.get('never_reacked')} never re-acked; "
                f"TCP reconnected p99 {rc.get('tcp_p99')} ms",
            )
        )
    if scenario.split_brain:
        rc = sim.get("reconnect_ms") or {}
        p99 = rc.get("p99")
        targets.append(
            Target(
                f"devices served again <= {TARGET_PARTITION_RECONNECT_P99_MS / 1000:g} s p99",
                p99 is None or p99 <= TARGET_PARTITION_RECONNECT_P99_MS,
                f"p50 {rc.get('p50')} / p99 {p99} ms (lost -> first ACK) over {rc.get('count')} reconnects",
            )
        )
        targets.append(
            Target(
                "split brain happened (2 VIP holders)",
                r.max_vip_holders == 2,
                f"max {r.max_vip_holders}",
            )
        )
        targets.append(
            Target(
                f"split brain alerted <= {TARGET_SPLIT_BRAIN_ALERT_S:g} s",
                r.split_brain_alert_s is not None and r.split_brain_alert_s <= TARGET_SPLIT_BRAIN_ALERT_S,
                f"{r.split_brain_alert_s} s (Alertmanager reachable: {r.alertmanager_reachable})",
            )
        )
    return targets


def table(results: list[ScenarioResult]) -> str:
    head = (
        f"{'scenario':16} {'master':6} {'VIP s':>6} {'recon p50/p99 ms':>17} {'sent':>6} "
        f"{'acked':>6} {'stored':>6} {'miss':>5} {'dup':>4} {'heal s':>6}  result / alerts"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        rc = r.sim.get("reconnect_ms") or {}
        recon = f"{rc.get('p50')}/{rc.get('p99')}" if rc.get("count") else "-"
        verdict = "PASS" if r.passed else "FAIL"
        alerts = (
            ",".join(
                f"{n}@{t}s" + (f"(resolved@{r.alerts_resolved[n]}s)" if n in r.alerts_resolved else "")
                for n, t in r.alerts.items()
            )
            or "none"
        )
        lines.append(
            f"{r.scenario:16} {r.master:6} {r.vip_move_s if r.vip_move_s is not None else '-':>6} "
            f"{recon:>17} {r.sim.get('sent', '-'):>6} {r.sim.get('acked', '-'):>6} "
            f"{r.stored if r.stored is not None else '?':>6} "
            f"{r.acked_missing if r.acked_missing is not None else '?':>5} "
            f"{r.sim.get('duplicates', '-'):>4} {r.heal_s if r.heal_s is not None else '-':>6}  "
            f"{verdict} alerts: {alerts}"
        )
        for t in r.targets:
            lines.append(f"    [{'ok' if t.ok else 'MISSED'}] {t.name}: {t.detail}")
        if r.error:
            lines.append(f"    [ERROR] {r.error}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="drill", description=__doc__)
    ap.add_argument("scenario", choices=[*SCENARIOS, "all"])
    ap.add_argument("--env", default="lab")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1000.0, help="total frames/s")
    ap.add_argument(
        "--duration",
        type=float,
        default=20.0,
        help="minimum seconds of traffic per scenario (it runs until the pair is whole again)",
    )
    ap.add_argument("--out", default=str(REPO_ROOT / "logs" / "drills"))
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= 1000:
        ap.error("--devices must be in 1..1000 (device ids of one run are a block of 1000)")
    if not 0 < args.duration <= 300 or not 0 < args.rate <= 20000:
        ap.error("--duration must be in (0, 300] s and --rate in (0, 20000] frames/s")
    return args


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM (CI timeout, kill) unwinds like Ctrl-C: the finally blocks heal the injected fault
    # and stop the simulator before the process goes.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    logs_dir = Path(args.out) / f"{args.env}-{stamp}"
    logs_dir.mkdir(parents=True, exist_ok=True)
    try:
        inventory = load_inventory(args.env)
        inventory.require_groups()
    except DrillError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 2
    executor = make_executor(inventory)
    plan = TrafficPlan(devices=args.devices, rate=args.rate, duration_s=args.duration)
    drill = Drill(inventory, executor, plan)
    results: list[ScenarioResult] = []
    try:
        for name in names:
            scenario = SCENARIOS[name]
            try:
                results.append(drill.run(scenario, logs_dir))
            except DrillError as exc:
                log(f"{name}: ERROR {exc}")
                failed = ScenarioResult(name, args.env, stamp, "?", "?", scenario.summary, [], [])
                failed.error = str(exc)
                results.append(failed)
                break  # one fault at a time: never inject into a pair that is not whole
            log(f"{name}: {'PASS' if results[-1].passed else 'FAIL'}")
    finally:
        executor.close()
    report_file = logs_dir / "report.json"
    report_file.write_text(
        json.dumps(
            {
                "env": args.env,
                "started_utc": stamp,
                "traffic": asdict(plan),
                "scenarios": [{**asdict(r), "passed": r.passed} for r in results],
                "passed": all(r.passed for r in results) and len(results) == len(names),
            },
            indent=2,
        )
    )
    print()
    print(table(results))
    print(f"\nreport: {report_file}")
    ok = all(r.passed for r in results) and len(results) == len(names)
    return 0 if ok else 1
