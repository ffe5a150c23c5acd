"""The runbook checker without a lab: what it extracts from the docs, how it splits and classifies
commands, what it reads out of PromQL, and the firewall rule it enforces statically. The run
against deployed hosts is in scripts/rehearsal.sh (over SSH, on the production rehearsal)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import runbook_check as rc

DOC = """# Title

```sh
ssh $GW systemctl status nanogridata-gateway --no-pager
# a comment line is prose
curl -sS http://$MON:9093/api/v2/alerts   # a plain comment
ssh $GW "tail -c 2000 /var/lib/x/$SINK.jsonl"   #: may-fail (only while it fires)
ssh $GW systemctl restart \\
  nanogridata-gateway
```

```
scripts/drill.sh <scenario> [--env lab]
```

```sh on=gateways
cat /var/lib/prometheus/node-exporter/keepalived_VI_NGD.prom      # written by notify.py
```
"""


def test_fenced_shell_lines_are_extracted_with_line_directives_and_host() -> None:
    cmds = rc.extract_fenced("d.md", DOC)
    assert [(c.line, c.text) for c in cmds] == [
        (4, "ssh $GW systemctl status nanogridata-gateway --no-pager"),
        (6, "curl -sS http://$MON:9093/api/v2/alerts"),
        (7, 'ssh $GW "tail -c 2000 /var/lib/x/$SINK.jsonl"'),
        (8, "ssh $GW systemctl restart    nanogridata-gateway"),
        (17, "cat /var/lib/prometheus/node-exporter/keepalived_VI_NGD.prom"),
    ]
    assert cmds[2].directives == {"may-fail"}
    assert not cmds[1].directives
    assert cmds[4].on == "gateways"
    assert all(c.on == "" for c in cmds[:4])


def test_an_unknown_directive_is_named_with_its_line() -> None:
    with pytest.raises(ValueError, match=r"d\.md:2: unknown runbook-check directive '#: mayfail'"):
        rc.extract_fenced("d.md", "```sh\nls /   #: mayfail\n```\n")


def test_a_hash_inside_quotes_or_a_word_is_not_a_comment() -> None:
    assert rc.strip_comment("grep -E 'a #b' f   # why") == ("grep -E 'a #b' f", "why")
    assert rc.strip_comment("echo a#b") == ("echo a#b", "")
    assert rc.strip_comment('ssh x "ls # y"') == ('ssh x "ls # y"', "")


def test_prose_commands_and_installed_paths_are_extracted_check_only() -> None:
    text = "Run `systemctl restart nginx`, read `/etc/keepalived/vip.toml`, see `/ready` and `python3 x`.\n"
    cmds = rc.extract_inline("d.md", text)
    assert [c.text for c in cmds] == ["systemctl restart nginx", "/etc/keepalived/vip.toml"]
    assert all(c.on == rc.ANY_HOST and "check-only" in c.directives for c in cmds)


def test_operations_table_synopses_are_extracted() -> None:
    text = (
        "intro\n\n| task | command |\n|---|---|\n"
        "| back up | `./scripts/backup.sh ENV [--a R \\| --b R]` |\n\nafter `./scripts/x.sh`\n"
    )
    cmds = rc.extract_synopses("o.md", text)
    assert [(c.line, c.text, c.synopsis) for c in cmds] == [
        (5, "./scripts/backup.sh ENV [--a R | --b R]", True)
    ]
    assert rc.script_options(cmds[0].text) == ["--a", "--b"]


def test_ssh_runs_its_command_on_the_host_and_loops_expand() -> None:
    simples = rc.split_simple(
        'for h in gw-a gw-b; do ssh $h "ip -brief addr | grep -w 10.0.0.1; systemctl is-active nginx"; done'
    )
    assert [(s.host, s.argv[0]) for s in simples] == [
        ("gw-a", "ip"),
        ("gw-a", "grep"),
        ("gw-a", "systemctl"),
        ("gw-b", "ip"),
        ("gw-b", "grep"),
        ("gw-b", "systemctl"),
    ]
    local = rc.split_simple("ping -c 3 gw-a; ssh -o ConnectTimeout=5 gw-a uptime 2>/dev/null | tail -1")
    assert [(s.host, s.argv) for s in local] == [
        ("", ("ping", "-c", "3", "gw-a")),
        ("gw-a", ("uptime",)),
        ("", ("tail", "-1")),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "ssh gw-a systemctl status nanogridata-gateway --no-pager",
        "ssh gw-a journalctl -u keepalived --since -10min --no-pager | tail -20",
        "promtool query instant http://mon:9090 'up == 0'",
        "ssh mon \"curl -sS 'http://localhost:9115/probe?module=tcp_connect' | tail -20\"",
        'ssh gw-a "nginx -t && tail -30 /var/log/nginx/error.log"',
        "ssh gw-a \"curl -sS -m 3 -o /dev/null -w '%{http_code}\\n' http://10.0.0.2:5681/ || true\"",
        "ssh gw-a \"tail -200 /var/log/nginx/stream-access.log | awk '{print \\$1}' | sort | uniq -c\"",
        "./scripts/rollback.sh lab --list",
        'ssh gw-a "sudo /usr/local/lib/x/notify.py --config /etc/keepalived/vip.toml reconcile --no-fix"',
        'ssh gw-a "systemctl kill -s USR2 keepalived; sleep 2; grep -A3 Advert /tmp/keepalived.stats"',
    ],
)
def test_read_only_commands_are_run(line: str) -> None:
    assert rc.classify(rc.Command("d", 1, line), rc.split_simple(line)) == "run"


@pytest.mark.parametrize(
    "line",
    [
        "ssh gw-a systemctl restart nanogridata-gateway",
        'for h in gw-a gw-b; do ssh $h "systemctl status nginx; systemctl stop keepalived"; done',
        "ssh gw-a journalctl --vacuum-size=500M",
        "ssh gw-a curl -X POST localhost:5679/drain",
        "curl -sS -d x=1 http://mon:9093/api/v2/silences",
        "ssh gw-a ip addr del 10.0.0.1/24 dev eth0",
        "ssh gw-a chronyc makestep",
        "ssh gw-a systemctl kill -s TERM keepalived",
        "./scripts/rollback.sh lab",
        "./scripts/restore.sh lab BACKUP --verify-only",
        "amtool silence add alertname=X",
    ],
)
def test_commands_that_change_state_are_only_checked(line: str) -> None:
    assert rc.classify(rc.Command("d", 1, line), rc.split_simple(line)) == "check"


def test_directives_override_the_classification() -> None:
    line = "ssh gw-a chronyc tracking"
    assert rc.classify(rc.Command("d", 1, line, directives=frozenset({"not-in-lab"})), []) == "skip"
    assert rc.classify(rc.Command("d", 1, line, directives=frozenset({"check-only"})), []) == "check"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "sum by (instance, model) (rate(nanogridata_mac_failures_total[5m]))",
            {"nanogridata_mac_failures_total"},
        ),
        ('up{instance="gw-a", job=~"gate.*"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(nanogridata_ack_latency_seconds_bucket[5m])))",
            {"nanogridata_ack_latency_seconds_bucket"},
        ),
        (
            "time() - nanogridata_sink_last_success_timestamp_seconds",
            {"nanogridata_sink_last_success_timestamp_seconds"},
        ),
        (
            "nanogridata:ingest_error:ratio_rate5m or nanogridata_ready",
            {"nanogridata:ingest_error:ratio_rate5m", "nanogridata_ready"},
        ),
        ("(probe_ssl_earliest_cert_expiry - time()) / 86400", {"probe_ssl_earliest_cert_expiry"}),
        ("increase(keepalived_vrrp_transitions_total[30m] offset 1h)", {"keepalived_vrrp_transitions_total"}),
    ],
)
def test_metric_names_of_a_query(expr: str, names: set[str]) -> None:
    assert rc.promql_metrics(expr) == names


def test_a_metric_is_known_by_its_family() -> None:
    known = {"nanogridata_ack_latency_seconds", "nanogridata_replays_total"}
    assert rc.metric_known("nanogridata_ack_latency_seconds_bucket", known)
    assert rc.metric_known("nanogridata_replays_total", known)
    assert not rc.metric_known("nanogridata_replay_total", known)


def test_queries_come_from_promtool_and_query_urls() -> None:
    simples = rc.split_simple(
        "promtool query instant http://mon:9090 'up == 0'; curl -sS 'http://mon:9090/api/v1/query?query=count(up)'"
    )
    assert [q.expr for q in rc.queries(simples, False)] == ["up == 0", "count(up)"]


def test_named_things_of_a_command() -> None:
    assert rc.named_paths(("du", "-sh", "/var/lib/nanogridata/*", "/dev/null", "http://x/")) == [
        "/var/lib/nanogridata/*"
    ]
    assert rc.named_paths(("/etc/keepalived/vip.toml",)) == ["/etc/keepalived/vip.toml"]
    assert rc.journal_matches(
        ("journalctl", "-u", "keepalived", "-t", "ngd-vip-notify", "--since", "-1h")
    ) == [
        ("unit", "keepalived"),
        ("tag", "ngd-vip-notify"),
    ]
    assert rc.systemctl_units(
        ("systemctl", "status", "prometheus", "prometheus-alertmanager", "--no-pager")
    ) == [
        "prometheus",
        "prometheus-alertmanager",
    ]
    assert rc.systemctl_units(("systemctl", "--failed", "--no-pager")) == []
    assert rc.systemctl_units(("systemctl", "kill", "-s", "USR2", "keepalived")) == ["keepalived"]


def test_placeholders_are_filled_from_the_inventory() -> None:
    inv = rc.Inventory(
        groups={"gateways": ["gw-a", "gw-b"], "monitoring": ["mon"], "collectors": ["collector"]},
        hostvars={
            "gw-a": {"ngd_private_ip": "10.0.0.11"},
            "gw-b": {"ngd_private_ip": "10.0.0.12"},
            "mon": {"ngd_private_ip": "10.0.0.20"},
            "collector": {"ngd_private_ip": "10.0.0.30"},
        },
        allvars={"ngd_vip": "10.0.0.100", "ngd_vip_interface": "eth0"},
    )
    variables, textual = rc.placeholders(inv, "vm-collector")
    assert variables == {
        "GW": "gw-a",
        "PEER": "gw-b",
        "MON": "mon",
        "SINK": "vm-collector",
        "PROM": "http://mon:9090",
        "AM": "http://mon:9093",
    }
    tunnelled = rc.placeholders(inv, "s", "production", "http://127.0.0.1:4000", "http://127.0.0.1:4001")
    assert tunnelled[0]["PROM"] == "http://127.0.0.1:4000" and tunnelled[1]["ENV"] == "production"
    line = 'ssh $GW "curl http://<peer_ip>:5681/ http://<collector_ip>:8428 <VIP>"; ./x ENV; ENVX $SINK'
    assert rc.substitute(line, variables, textual) == (
        'ssh gw-a "curl http://10.0.0.12:5681/ http://10.0.0.30:8428 10.0.0.100"; ./x lab; ENVX vm-collector'
    )
    assert rc.unknown_placeholders("ssh gw-a cat /x/<latest> </dev/null") == ["<latest>"]


OPEN = {"gateways": set[int](), "monitoring": {9090, 9093}, "collectors": set[int]()}


@pytest.mark.parametrize(
    "line",
    [
        "curl -fsS http://$GW:5679/ready; curl -fsS http://$GW:5679/health",
        'for h in gw-a gw-b; do curl -sS -m 3 http://$h:5679/ready; echo " $h"; done',
        'curl -sS "http://$MON:9115/probe?module=tcp_connect"',
    ],
)
def test_a_port_the_firewall_refuses_the_operator_is_reported(line: str) -> None:
    problems = rc.firewall_refusals([rc.Command("d.md", 3, line)], OPEN)
    assert len(problems) == 1
    assert problems[0].startswith("d.md:3: ")


@pytest.mark.parametrize(
    "line",
    [
        'ssh $GW "curl -fsS localhost:5679/ready"',
        "promtool query instant http://$MON:9090 'up'",
        "curl -sS http://$MON:9093/api/v2/alerts",
    ],
)
def test_ports_open_to_the_operator_or_reached_over_ssh_pass(line: str) -> None:
    assert rc.firewall_refusals([rc.Command("d.md", 3, line)], OPEN) == []


def test_admin_ports_come_from_the_group_firewall_rules() -> None:
    ports = rc.admin_ports()
    assert ports["monitoring"] == {9090, 9093}
    assert ports["gateways"] == set()


def test_the_runbooks_parse_and_no_local_command_hits_a_closed_port() -> None:
    commands = rc.extract_all()
    assert len(commands) > 80
    assert rc.firewall_refusals(commands, rc.admin_ports()) == []
    for cmd in commands:
        mode = rc.classify(
            cmd, [] if cmd.synopsis else rc.split_simple(rc.substitute(cmd.text, {}, {"<VIP>": "x"}))
        )
        assert mode in ("run", "check", "skip")


def test_list_mode_needs_no_lab() -> None:
    assert rc.main(["--list"]) == 0


def test_a_command_line_a_shell_cannot_parse_is_named_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runbooks = tmp_path / "docs" / "runbooks"
    runbooks.mkdir(parents=True)
    (runbooks / "x.md").write_text("# X\n\n```sh\nrollback.sh prod --to <the survivor's release>\n```\n")
    (tmp_path / rc.OPERATIONS_DOC).write_text("# Operations\n")
    with pytest.raises(ValueError, match=r"docs/runbooks/x\.md:4: not a shell command line"):
        rc.extract_all(tmp_path)


def _lab(tmp_path: Path) -> rc.Lab:
    """A lab whose lab.sh only prints what it was asked to run."""
    stub = tmp_path / "lab.sh"
    stub.write_text('#!/bin/sh\nprintf "[%s]" "$NGD_LAB" "$@"; echo\n', encoding="utf-8")
    stub.chmod(0o755)
    inv = rc.Inventory(
        groups={"gateways": ["gw-a", "gw-b"], "monitoring": ["mon"]},
        hostvars={
            "gw-a": {"ngd_private_ip": "10.9.0.11"},
            "gw-b": {"ngd_private_ip": "10.9.0.12"},
            "mon": {},
        },
        allvars={},
    )
    return rc.Lab("ci", inv, stub, {"GW": "gw-a", "MON": "mon"}, {}, "")


def test_ssh_on_the_operators_machine_is_the_labs_shell(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    proc = lab.run_line('ssh -o ConnectTimeout=5 $GW "journalctl -u x | tail -1"; ssh 10.9.0.12 uptime')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "[ci][shell][gw-a][bash][-c][journalctl -u x | tail -1]",
        "[ci][shell][gw-b][bash][-c][uptime]",
    ]
    on_host = lab.run_line("ip -br addr", "gw-b")
    assert on_host.stdout.strip() == "[ci][shell][gw-b][bash][-c][ip -br addr]"


def test_host_names_resolve_to_lab_addresses_for_network_tools(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    proc = lab.run_line(
        "_ngd_args http://gw-a:5679/ready gw-b gw-a:22 'up{instance=\"gw-a\"}' https://gw-b/x gw-ab; "
        'printf "%s\\n" "${_NGD_ARGS[@]}"'
    )
    assert proc.stdout.splitlines() == [
        "http://10.9.0.11:5679/ready",
        "10.9.0.12",
        "10.9.0.11:22",
        'up{instance="gw-a"}',
        "https://10.9.0.12/x",
        "gw-ab",
    ]


def _ssh_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> rc.SshHosts:
    """Hosts reached over SSH, with an ssh on PATH that only prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "ssh"
    stub.write_text('#!/bin/sh\nprintf "[%s]" "$@"; echo\n', encoding="utf-8")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    inv = rc.Inventory(
        groups={"gateways": ["gw-a", "gw-b"], "monitoring": ["mon"]},
        hostvars={
            "gw-a": {"ngd_private_ip": "10.9.0.11", "ansible_host": "198.51.100.11"},
            "gw-b": {"ngd_private_ip": "10.9.0.12", "ansible_host": "198.51.100.12"},
            "mon": {"ngd_private_ip": "10.9.0.20", "ansible_host": "198.51.100.20"},
        },
        allvars={
            "ansible_user": "root",
            "ansible_ssh_common_args": "-o 'UserKnownHostsFile=/inv/known_hosts /inv/known_hosts.tofu'"
            " -o StrictHostKeyChecking=yes",
        },
    )
    return rc.SshHosts("production", inv, tmp_path / "unused", {"GW": "gw-a"}, {}, "", str(tmp_path / "cm"))


def _args(line: str) -> list[str]:
    return line.strip()[1:-1].split("][")


def test_over_ssh_a_host_is_reached_as_the_inventory_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = _ssh_hosts(tmp_path, monkeypatch)
    proc = hosts.run_line('ssh -o ConnectTimeout=5 $GW "journalctl -u x | tail -1"')
    assert proc.returncode == 0, proc.stderr
    argv = _args(proc.stdout)
    assert argv[:4] == [
        "-o",
        "UserKnownHostsFile=/inv/known_hosts /inv/known_hosts.tofu",
        "-o",
        "StrictHostKeyChecking=yes",
    ]
    assert argv[-4:-1] == ["-l", "root", "198.51.100.11"]
    # The remote shell gets one word: bash -c and the command, quoted for it.
    assert shlex.split(argv[-1]) == ["bash", "-c", "journalctl -u x | tail -1"]
    on_host = _args(hosts.run_line("ip -br addr | head -1", "gw-b").stdout)
    assert on_host[-2] == "198.51.100.12"
    assert shlex.split(on_host[-1]) == ["bash", "-c", "ip -br addr | head -1"]


def test_over_ssh_host_names_resolve_to_public_addresses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = _ssh_hosts(tmp_path, monkeypatch)
    proc = hosts.run_line('_ngd_args http://gw-a:5679/ready mon; printf "%s\\n" "${_NGD_ARGS[@]}"')
    assert proc.stdout.splitlines() == ["http://198.51.100.11:5679/ready", "198.51.100.20"]


def test_ssh_mode_needs_an_inventory() -> None:
    with pytest.raises(SystemExit) as exc:
        rc.main(["--ssh", "--env", "production"])
    assert exc.value.code == 2
