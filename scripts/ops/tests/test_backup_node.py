"""`backup.sh --node` / `--store` on this machine, against the gateway's real spool being written.

NGD_BACKUP_FS_ROOT stands a directory in for / (the gateway's /etc/nanogridata and
/var/lib/nanogridata below it). A writer process appends to the spool with the gateway's own
Spool class and records a frame as acknowledged only after its commit returned, as the gateway
does before it ACKs; the backup runs meanwhile. Every frame acknowledged before the backup started
must be in the snapshot, and the snapshot must pass SQLite's integrity check.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BACKUP = REPO / "scripts/backup.sh"

WRITER = r"""
import asyncio, os, sys, time
from prometheus_client import CollectorRegistry
from nanogridata_gateway.records import Record
from nanogridata_gateway.spool import Spool

async def main(path: str, acked: str, stop: str) -> None:
    spool = Spool(path, ["vm"], 1 << 30, 72 * 3600, 0.0, 1000, CollectorRegistry())
    seq = 0
    with open(acked, "a", buffering=1) as out:
        while not os.path.exists(stop) and seq < 200_000:
            now = int(time.time() * 1000)  # the spool's age limit counts from the receive time
            batch = [(Record(0x10, 1, 7, seq + i, now, now, b"\xa1ap\x01" * 16), 1) for i in range(1, 21)]
            await spool.append_many(batch)  # returns once committed: only then is it "ACKed"
            seq += 20
            out.write(f"{seq}\n")
    await spool.close()

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A gateway's files below tmp_path/root, as the gateway role lays them out."""
    root = tmp_path / "root"
    etc = root / "etc/nanogridata"
    etc.mkdir(parents=True)
    (etc / "gateway.toml").write_text('[spool]\npath = "/var/lib/nanogridata/spool.db"\n')
    (etc / "gateway.toml").chmod(0o640)
    (etc / "secrets.toml").write_text('[models."0x10"]\nsecret = "00"\n')
    (etc / "secrets.toml").chmod(0o600)
    state = root / "var/lib/nanogridata"
    state.mkdir(parents=True)
    (state / "replay.snapshot").write_bytes(b"NGDRPL1\n")
    (state / "replay.journal").write_bytes(b"\x10\x00\x00\x00\x07\x00\x00\x00\x01")
    (state / "archive.jsonl").write_text('{"seq": 1}\n')
    (root / "textfile").mkdir()
    return root


@pytest.fixture
def writer(root: Path, tmp_path: Path) -> Iterator[Path]:
    """The spool under write load; yields the file of acknowledged high-water marks."""
    acked, stop = tmp_path / "acked", tmp_path / "stop"
    env = dict(os.environ, PYTHONPATH=str(REPO / "gateway/src"))
    spool = root / "var/lib/nanogridata/spool.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(spool), str(acked), str(stop)], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_acked(acked)) < 3:
            assert proc.poll() is None, "the spool writer died"
            time.sleep(0.05)
        assert len(_acked(acked)) >= 3, "the spool writer committed nothing within 60 s"
        yield acked
    finally:
        stop.touch()
        proc.wait(timeout=60)
    assert proc.returncode == 0


def _acked(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _backup(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NGD_BACKUP_FS_ROOT=str(root))
    return subprocess.run(
        ["bash", str(BACKUP), "--node", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _members(archive: Path) -> set[str]:
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("./") for m in tar.getmembers()}


def test_spool_snapshot_under_write_load_holds_every_acknowledged_frame(
    root: Path, writer: Path, tmp_path: Path
) -> None:
    acked_before = max(_acked(writer))
    out = root / "backups/20260101T000000Z"
    result = _backup(root, "--out", str(out), "--textfile-dir", str(root / "textfile"))
    assert result.returncode == 0, result.stderr
    assert max(_acked(writer)) > acked_before, "the writer was not writing during the backup"

    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out, check=False).returncode == 0
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out / "gateway.tar.gz") as tar:
        tar.extractall(unpacked, filter="tar")
    db = unpacked / "var/lib/nanogridata/spool.db"
    assert not Path(f"{db}-wal").exists(), "a WAL file in the backup: not a self-contained snapshot"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    seqs = {seq for (seq,) in conn.execute("SELECT seq FROM records")}
    conn.close()
    lost = set(range(1, acked_before + 1)) - seqs
    assert not lost, f"{len(lost)} frames acknowledged before the backup are not in it"
    manifest = (out / "MANIFEST").read_text()
    assert "spool_integrity=ok" in manifest
    assert f"spool_records={len(seqs)}" in manifest
    for name in ("replay.journal", "replay.snapshot", "archive.jsonl"):
        assert (unpacked / "var/lib/nanogridata" / name).read_bytes() == (
            root / "var/lib/nanogridata" / name
        ).read_bytes()
    metrics = (root / "textfile/ngd_backup.prom").read_text()
    assert 'ngd_backup_last_success_timestamp_seconds{kind="node"} ' in metrics


def test_secrets_are_left_out_without_a_recipient(root: Path) -> None:
    out = root / "backups/20260101T000000Z"
    result = _backup(root, "--out", str(out))
    assert result.returncode == 0, result.stderr
    members = _members(out / "gateway.tar.gz")
    assert "etc/nanogridata/gateway.toml" in members
    assert not [m for m in members if "secret" in m], members
    # restore.sh unpacks it at /: nothing above the gateway's own directories.
    assert not {".", "", "etc", "var", "var/lib"} & members
    assert not (out / "secrets.tar.age").exists()
    assert "secrets=left-out(no age recipient):etc/nanogridata/secrets.toml" in (out / "MANIFEST").read_text()
    assert "secrets NOT in this backup" in result.stdout


@pytest.mark.skipif(shutil.which("age") is None, reason="age not installed (unit-ops.sh installs it)")
def test_secrets_are_encrypted_to_the_recipient(root: Path, tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
    recipient = subprocess.run(
        ["age-keygen", "-y", str(key)], check=True, capture_output=True, text=True
    ).stdout.strip()
    out = root / "backups/20260101T000000Z"
    result = _backup(root, "--out", str(out), "--age-recipient", recipient)
    assert result.returncode == 0, result.stderr
    assert not [m for m in _members(out / "gateway.tar.gz") if "secret" in m]
    assert b"secret" not in (out / "secrets.tar.age").read_bytes()
    clear = tmp_path / "secrets.tar"
    subprocess.run(["age", "-d", "-i", str(key), "-o", str(clear), str(out / "secrets.tar.age")], check=True)
    assert "etc/nanogridata/secrets.toml" in _members(clear)


def test_keep_n_deletes_the_oldest_backups_only(root: Path) -> None:
    backups = root / "backups"
    unrelated = backups / "ops-20250101T000000Z"  # a run of backup.sh ENV: not the timer's
    unrelated.mkdir(parents=True)
    for stamp in ("20260101T000000Z", "20260102T000000Z", "20260103T000000Z"):
        assert _backup(root, "--out", str(backups / stamp), "--keep", "2").returncode == 0
    assert sorted(p.name for p in backups.iterdir()) == [
        "20260102T000000Z",
        "20260103T000000Z",
        "ops-20250101T000000Z",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--keep", "0"], "--keep '0': want a whole number >= 1"),
        (["--age-recipient", "not-a-key"], "--age-recipient 'not-a-key': want an age public key"),
        (["--bogus"], "unknown argument: --bogus"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(root: Path, args: list[str], message: str) -> None:
    result = _backup(root, "--out", str(root / "backups/20260101T000000Z"), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_store_verifies_prunes_and_exports_offhost_freshness(root: Path, tmp_path: Path) -> None:
    store = tmp_path / "store/lab"
    textfile = root / "textfile"
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        # What backup.sh ENV copies there: host folders and a top-level SHA256SUMS.
        assert _backup(root, "--out", str(store / stamp / "gw-a")).returncode == 0
        subprocess.run(
            'sums=$(find . -type f -print0 | sort -z | xargs -0 sha256sum); echo "$sums" >SHA256SUMS',
            shell=True, cwd=store / stamp, check=True,
        )  # fmt: skip
        result = subprocess.run(
            ["bash", str(BACKUP), "--store", "--dir", str(store), "--env", "lab", "--keep", "1",
             "--textfile-dir", str(textfile)],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert [p.name for p in store.iterdir()] == ["20260102T000000Z"]
    metrics = (textfile / "ngd_backup_offhost_lab.prom").read_text()
    assert 'ngd_backup_last_success_timestamp_seconds{kind="offhost",env="lab"} ' in metrics
    assert 'ngd_backup_kept{kind="offhost",env="lab"} 1' in metrics


def test_store_refuses_a_copy_whose_checksums_do_not_match(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "store/lab/20260101T000000Z"
    assert _backup(root, "--out", str(copy / "gw-a")).returncode == 0
    subprocess.run("sha256sum gw-a/MANIFEST > SHA256SUMS", shell=True, cwd=copy, check=True)
    with (copy / "gw-a/MANIFEST").open("a") as f:
        f.write("x")
    result = subprocess.run(
        ["bash", str(BACKUP), "--store", "--dir", str(copy.parent), "--env", "lab", "--keep", "1"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "do not match after the copy" in result.stderr
