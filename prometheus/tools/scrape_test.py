#!/usr/bin/env python3
"""The rendered `node` scrape job and the HA rules in a real Prometheus, on loopback.

Serves two fake node-exporter textfile outputs (gw-a and gw-b, both MASTER of VI_NGD, with the
notify script's `instance` label) on 127.0.0.1, starts the Debian `prometheus` binary with the
rendered node job (its labels and metric_relabel_configs verbatim, targets pointed at the fakes)
and the rendered rules, then checks through the HTTP API that:
  - keepalived_vrrp_state carries vrrp_instance="VI_NGD" and the target's instance, and no
    exported_instance;
  - KeepalivedSplitBrain is pending or firing for VI_NGD (the rule joins both nodes' series).
Prometheus and the HTTP server are always stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import expect_alerts
import yaml
from loopback_daemon import Failure, loopback_daemon

TEXTFILE = """# HELP keepalived_vrrp_state VRRP state
# TYPE keepalived_vrrp_state gauge
keepalived_vrrp_state{instance="VI_NGD"} 2
# TYPE keepalived_vrrp_transitions_total counter
keepalived_vrrp_transitions_total{instance="VI_NGD"} 3
# TYPE node_textfile_mtime_seconds gauge
node_textfile_mtime_seconds{file="keepalived_VI_NGD.prom"} %d
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (TEXTFILE % int(time.time())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
        return json.load(resp)["data"]


def config_for(rendered: Path, fake_ports: list[int]) -> dict[str, Any]:
    config = yaml.safe_load((rendered / "prometheus.yml").read_text())
    node = next(job for job in config["scrape_configs"] if job["job_name"] == "node")
    gateways = [sc for sc in node["static_configs"] if sc["labels"]["role"] == "gateways"]
    if len(gateways) != 2:
        raise Failure("the rendered node job does not hold the two gateways")
    for static, port in zip(gateways, fake_ports, strict=True):
        static["targets"] = [f"127.0.0.1:{port}"]
    node["static_configs"] = gateways
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rendered / "rules" / "*.yml")],
        "scrape_configs": [node],
    }


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.5)
    raise Failure(f"timed out waiting for {what} (last answer: {last})")


def run(rendered: Path, binary: str) -> None:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def argv(port: int, workdir: Path) -> list[str]:
        config = config_for(rendered, [s.server_address[1] for s in servers])
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        return [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

    try:
        with loopback_daemon("prometheus", argv) as prom:
            check_relabelling_and_split_brain(prom.url)
    except TimeoutError as exc:
        raise Failure(str(exc)) from exc
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def check_relabelling_and_split_brain(base: str) -> None:
    wait_for(
        lambda: api(base, "/api/v1/query", query="keepalived_vrrp_state")["result"],
        30,
        "keepalived_vrrp_state to be scraped from both fakes",
    )
    wait_for(
        lambda: len(api(base, "/api/v1/query", query="keepalived_vrrp_state")["result"]) == 2,
        15,
        "both gateways' series",
    )
    series = api(base, "/api/v1/query", query="keepalived_vrrp_state")["result"]
    labels = sorted((s["metric"].get("instance"), s["metric"].get("vrrp_instance")) for s in series)
    if labels != [("gw-a", "VI_NGD"), ("gw-b", "VI_NGD")]:
        raise Failure(f"expected instance gw-a/gw-b with vrrp_instance VI_NGD, got {labels}")
    if any("exported_instance" in s["metric"] for s in series):
        raise Failure("exported_instance survived the metric relabelling")
    print("scrape_test: node job relabels the notify script's instance label to vrrp_instance")
    # Both fakes say MASTER: the split-brain rule must join them (pending: its `for` is 30s).
    expect_alerts.wait(base, ['KeepalivedSplitBrain{vrrp_instance="VI_NGD"}'], "pending", 20, 0.5)
    # The textfile is fresh and named like the notify script names it: no stale/missing alert,
    # and with a MASTER present no KeepalivedNoMaster.
    seen = expect_alerts.wait(base, ["KeepalivedStateStale", "KeepalivedNoMaster"], "inactive", 0, 0.5)
    print(f"scrape_test: KeepalivedSplitBrain pending, {sorted(seen)} inactive in a real Prometheus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rendered", type=Path, help="output directory of ansible/ci/render/render.sh")
    parser.add_argument("--prometheus", default="prometheus", help="Prometheus binary")
    args = parser.parse_args(argv)
    try:
        run(args.rendered.resolve(), args.prometheus)
    except Failure as exc:
        print(f"scrape_test: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
