"""backup role: scripts/backup.sh installed and run daily by a systemd timer on each gateway."""

from __future__ import annotations

import pytest
import testinfra.host

pytestmark = pytest.mark.backup


def test_backup_service_writes_a_checksummed_backup(host: testinfra.host.Host) -> None:
    """What the timer runs, run once: the node's state lands in the backup directory, checksummed."""
    root = "/var/backups/nanogridata"
    before = set(host.check_output(f"ls -1 {root}").split())
    run = host.run("systemctl start ngd-backup.service")  # Type=oneshot: returns when it is done
    assert run.rc == 0, host.run("journalctl -u ngd-backup.service -n 20 --no-pager").stdout
    new = set(host.check_output(f"ls -1 {root}").split()) - before
    assert len(new) == 1, f"expected one new backup in {root}, got {sorted(new)}"
    backup = f"{root}/{new.pop()}"
    try:
        assert host.run(f"cd {backup} && sha256sum --check --quiet SHA256SUMS").rc == 0
        manifest = host.file(f"{backup}/MANIFEST").content_string
        assert "parts=gateway" in manifest
        assert "spool_integrity=ok" in manifest  # the spool is an online-backup snapshot, checked
        # Secrets never in clear: encrypted to the configured age recipients, else left out.
        members = host.check_output(f"tar -tzf {backup}/gateway.tar.gz")
        assert "etc/nanogridata/gateway.toml" in members
        assert "secrets.toml" not in members
        unit = host.check_output("systemctl cat ngd-backup.service")
        if "--age-recipient" in unit:
            assert host.file(f"{backup}/secrets.tar.age").exists
            assert "secrets=encrypted(age):" in manifest
        else:
            assert "secrets=left-out(no age recipient)" in manifest
        # Its freshness, where node_exporter's textfile collector reads it (a node without
        # node_exporter, as in the gateway role's own scenario, has no such directory).
        textfile_dir = "/var/lib/prometheus/node-exporter"
        if host.file(textfile_dir).is_directory:
            metrics = host.file(f"{textfile_dir}/ngd_backup.prom").content_string
            assert 'ngd_backup_last_success_timestamp_seconds{kind="node"}' in metrics
    finally:
        host.run(f"rm -rf {backup}")  # not left behind by a check (it holds the node's secrets)


def test_backup_directory_is_private(host: testinfra.host.Host) -> None:
    directory = host.file("/var/backups/nanogridata")
    assert directory.is_directory and directory.mode == 0o700 and directory.user == "root"


def test_backup_timer_is_scheduled(host: testinfra.host.Host) -> None:
    timer = host.service("ngd-backup.timer")
    assert timer.is_enabled and timer.is_running
    # systemd computed a next run: the OnCalendar expression was valid.
    next_run = host.check_output("systemctl show -P NextElapseUSecRealtime ngd-backup.timer")
    assert next_run.strip() not in ("", "0", "n/a")
    assert host.run("systemd-analyze verify /etc/systemd/system/ngd-backup.service").rc == 0
