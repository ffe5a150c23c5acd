"""The webhook receiver (scripts/ops/webhook_receiver.py) as the rehearsal runs it: a real server
process on loopback, real HTTP POSTs shaped as Alertmanager's webhook sends them, the record read
back by its own `wait`. (The rehearsal has the monitoring host's real Alertmanager post to it.)"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "webhook_receiver.py"


def notification(status: str, **labels: str) -> dict[str, object]:
    """An Alertmanager webhook payload (version 4) with one alert."""
    return {
        "version": "4",
        "receiver": "pager",
        "status": status,
        "groupLabels": {"alertname": labels.get("alertname", "")},
        "alerts": [
            {
                "status": status,
                "labels": {"severity": "critical", **labels},
                "annotations": {"runbook_url": "https://example.test/alerts.md#nodedown"},
                "startsAt": "2026-01-01T00:00:00Z",
            }
        ],
    }


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    record = tmp_path / "record" / "webhooks.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "serve", "--listen", "127.0.0.1:0", "--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]  # printed once listening
        yield url, record
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0  # SIGTERM is a clean stop


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_post_is_recorded_and_answered_ok(receiver: tuple[str, Path]) -> None:
    url, record = receiver
    assert post(f"{url}/pager", json.dumps(notification("firing", alertname="NodeDown")).encode()) == (
        200,
        "ok",
    )
    assert post(f"{url}/chat", b"not json", "text/plain") == (200, "ok")
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert [e["path"] for e in entries] == ["/pager", "/chat"]
    assert entries[0]["body"]["alerts"][0]["labels"]["alertname"] == "NodeDown"
    assert entries[1]["body"] is None and entries[1]["text"] == "not json"


def test_only_post_and_bounded_bodies(receiver: tuple[str, Path]) -> None:
    url, record = receiver
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{url}/pager", timeout=30)
    assert err.value.code == 405
    # Refused on its announced length, before a byte of it is read.
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=30)
    conn.putrequest("POST", "/pager")
    conn.putheader("Content-Length", str((1 << 20) + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert record.read_text() == ""


def test_wait_finds_the_alert_by_path_status_and_labels(receiver: tuple[str, Path]) -> None:
    url, record = receiver
    post(f"{url}/chat", json.dumps(notification("firing", alertname="NodeDown", instance="mon")).encode())
    post(
        f"{url}/pager",
        json.dumps(notification("firing", alertname="NodeDown", instance="collector")).encode(),
    )
    post(
        f"{url}/pager",
        json.dumps(notification("resolved", alertname="NodeDown", instance="collector")).encode(),
    )
    found = run(
        "wait", "--record", str(record), "--path", "/pager", "--status", "resolved",
        "--label", "alertname=NodeDown", "--label", "instance=collector", "--timeout", "30",
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert result["receiver"] == "pager"
    assert result["alert"]["status"] == "resolved"
    assert result["alert"]["labels"]["instance"] == "collector"


def test_wait_times_out_when_nothing_matches(receiver: tuple[str, Path]) -> None:
    url, record = receiver
    post(f"{url}/chat", json.dumps(notification("firing", alertname="NodeDown", instance="mon")).encode())
    missed = run(
        "wait", "--record", str(record), "--path", "/pager", "--label", "instance=mon", "--timeout", "2"
    )
    assert missed.returncode == 1
    assert "no firing alert (instance=mon) POSTed to /pager within 2 s" in missed.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--listen", "no-port", "--record", "x"],
        ["serve", "--listen", "127.0.0.1:99999", "--record", "x"],
        ["wait", "--record", "x", "--path", "/p", "--label", "novalue"],
        ["wait", "--record", "x", "--path", "/p", "--timeout", "0"],
        ["wait", "--record", "x", "--path", "/p", "--status", "pending"],
        [],
    ],
)
def test_bad_arguments_exit_2_without_a_traceback(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "records what arrived" in result.stdout
