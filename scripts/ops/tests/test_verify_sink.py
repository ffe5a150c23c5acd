"""The end-to-end probe's sink check (scripts/ops/verify.yml, play "Find the probe frames at the
sink") on an environment without a collector: run by ansible-playbook against two "gateways" on
this machine (local connection) with gateway.toml files and a /metrics endpoint of our own. A sink
that is configured and receives nothing fails the probe; a jsonl archive alone passes only with
the probe's records in it, and is reported loudly as no real sink."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

REPO = Path(__file__).resolve().parents[3]
PROBE_DEVICE = 3000004242


class _Metrics(BaseHTTPRequestHandler):
    last_success: ClassVar[dict[str, float]] = {}

    def do_GET(self) -> None:
        body = "".join(
            f'nanogridata_sink_last_success_timestamp_seconds{{sink="{name}"}} {t:.1f}\n'
            for name, t in self.last_success.items()
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def metrics_port() -> Iterator[int]:
    _Metrics.last_success = {}
    server = HTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()


def gateway_toml(path: Path, sinks: dict[str, dict[str, str]]) -> Path:
    lines = []
    for name, sink in sinks.items():
        lines.append(f"[sinks.{json.dumps(name)}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in sink.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def probe(tmp_path: Path, port: int, sinks: dict[str, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "hosts.yml"
    config = gateway_toml(tmp_path / "gateway.toml", sinks)
    hosts = {host: {"ansible_connection": "local"} for host in ("gw-a", "gw-b")}
    inventory.write_text(json.dumps({"all": {"children": {"gateways": {"hosts": hosts}}}}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg"),
        "ANSIBLE_FORCE_COLOR": "0",
        "NGD_CACHE": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(inventory),
            str(REPO / "scripts/ops/verify.yml"),
            "--tags",
            "sink",
            "-e",
            f"@{REPO}/ansible/group_vars/all/ports.yml",
            "-e",
            json.dumps(
                {
                    "ngd_release": "1.0.0",
                    "ngd_probe_device": PROBE_DEVICE,
                    "ngd_probe_started": int(time.time()) - 5,
                    "ngd_gateway_metrics_port": port,
                    "probe_sink_wait_s": 2,
                    "probe_gateway_config": str(config),
                    "ansible_become": False,
                    "ansible_python_interpreter": "/usr/bin/python3",
                }
            ),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def record(device: int) -> str:
    return json.dumps({"modelId": 16, "deviceId": device, "seq": 1}, separators=(",", ":")) + "\n"


def test_archive_with_the_probe_passes_and_says_there_is_no_real_sink(
    tmp_path: Path, metrics_port: int
) -> None:
    archive = tmp_path / "archive.jsonl"
    archive.write_text(record(PROBE_DEVICE - 1) + record(PROBE_DEVICE))
    result = probe(tmp_path, metrics_port, {"archive": {"type": "jsonl", "path": str(archive)}})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"probe device {PROBE_DEVICE} at: jsonl archive" in result.stdout
    assert "WARNING: NO REAL SINK" in result.stdout


def test_archive_without_the_probe_fails(tmp_path: Path, metrics_port: int) -> None:
    archive = tmp_path / "archive.jsonl"
    archive.write_text(record(PROBE_DEVICE + 1))  # another device only
    result = probe(tmp_path, metrics_port, {"archive": {"type": "jsonl", "path": str(archive)}})
    assert result.returncode != 0
    assert (
        f"the probe device {PROBE_DEVICE}'s frames were acknowledged but did not reach every sink"
        in result.stdout
    )


def test_a_configured_sink_that_confirmed_nothing_since_the_probe_fails(
    tmp_path: Path, metrics_port: int
) -> None:
    _Metrics.last_success = {"central": time.time() - 3600}
    result = probe(tmp_path, metrics_port, {"central": {"type": "http_json", "url": "http://127.0.0.1:9/x"}})
    assert result.returncode != 0
    assert "did not reach every sink" in result.stdout
    assert "NO REAL SINK" not in result.stdout


def test_a_configured_sink_that_confirmed_a_batch_passes(tmp_path: Path, metrics_port: int) -> None:
    _Metrics.last_success = {"central": time.time()}
    result = probe(tmp_path, metrics_port, {"central": {"type": "http_json", "url": "http://127.0.0.1:9/x"}})
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"probe device {PROBE_DEVICE} at: confirmed central" in result.stdout
    assert "NO REAL SINK" not in result.stdout
