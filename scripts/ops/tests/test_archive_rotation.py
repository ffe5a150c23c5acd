"""The gateway's JSON-lines archive is rotated without losing or tearing a record: the gateway
role's logrotate configuration (rendered from its template) run by the real logrotate, forced,
over and over, while the real jsonl sink appends fsync'd batches to the file."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import jinja2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLE = REPO / "ansible/roles/gateway"
sys.path.insert(0, str(REPO / "gateway/src"))

from nanogridata_gateway.delivery_config import SinkConfig  # noqa: E402
from nanogridata_gateway.sinks.jsonl import JsonlSink  # noqa: E402

LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
pytestmark = pytest.mark.skipif(
    not Path(LOGROTATE).exists(), reason="logrotate is not installed (scripts/ci/unit-ops.sh installs it)"
)


def render(archive: Path, sinks: dict[str, dict[str, str]] | None = None) -> str:
    defaults = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        (ROLE / "templates/logrotate.j2").read_text()
    )
    return template.render(
        gateway_archive_path=str(archive),
        gateway_sinks=sinks or {},
        gateway_user="root",
        gateway_group="root",
        gateway_archive_rotate_max_size=defaults["gateway_archive_rotate_max_size"],
        gateway_archive_rotate_keep=defaults["gateway_archive_rotate_keep"],
    )


def test_the_configuration_renames_and_never_copies() -> None:
    text = render(
        Path("/var/lib/nanogridata/archive.jsonl"), {"audit": {"type": "jsonl", "path": "/srv/a.jsonl"}}
    )
    lines = [line.strip() for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "/var/lib/nanogridata/archive.jsonl" in lines and "/srv/a.jsonl" in lines
    assert "nocopytruncate" in lines and "nocreate" in lines and "delaycompress" in lines
    assert "copytruncate" not in lines


def test_rotation_under_fsync_appends_loses_no_record(tmp_path: Path) -> None:
    archive = tmp_path / "archive.jsonl"
    conf = tmp_path / "logrotate.conf"
    conf.write_text(render(archive))
    sink = JsonlSink(SinkConfig(name="archive", type="jsonl", path=str(archive)))
    per_batch, max_batches = 25, 100_000
    stop = threading.Event()
    written: list[int] = []

    def append() -> None:
        async def run() -> None:
            for batch in range(max_batches):
                if stop.is_set():
                    return
                await sink.deliver(
                    [json.dumps({"seq": batch * per_batch + i}).encode() for i in range(per_batch)], []
                )
                written.append(batch)

        asyncio.run(run())

    writer = threading.Thread(target=append)
    writer.start()
    keep = yaml.safe_load((ROLE / "defaults/main.yml").read_text())["gateway_archive_rotate_keep"]
    rotations = min(8, keep - 1)  # fewer than kept: no record may age out
    try:
        for _ in range(rotations):
            # Rotate a file the sink has (re)created and is appending to.
            deadline = time.monotonic() + 120
            while not (archive.exists() and archive.stat().st_size > 0):
                assert writer.is_alive() and time.monotonic() < deadline, "the sink stopped writing"
                time.sleep(0.01)
            result = subprocess.run(
                [LOGROTATE, "--force", "--state", str(tmp_path / "state"), str(conf)],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
    finally:
        stop.set()
        writer.join(timeout=300)

    seen: list[int] = []
    files = sorted(tmp_path.glob("archive.jsonl*"))
    for path in files:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends in a torn record"
        seen += [json.loads(line)["seq"] for line in data.splitlines()]
    assert len([p for p in files if p.suffix == ".gz"]) == rotations - 1, [p.name for p in files]
    assert sorted(seen) == list(range(len(written) * per_batch))  # every record, exactly once
