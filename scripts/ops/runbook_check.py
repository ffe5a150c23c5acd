#!/usr/bin/env python3
"""Runbook commands, tested: every shell command of docs/runbooks/*.md (and the command table at
the top of docs/operations.md) is executed against a deployed lab, or, when it changes state, is
checked for the existence of what it names. A wrong command in a runbook fails.

  runbook_check.py --list                   # extract and classify only (no lab)
  runbook_check.py --lab deploy --inventory .lab/deploy/hosts.yml
  runbook_check.py --ssh --env production --inventory ansible/inventories/production/hosts.yml

What is extracted: the lines of the fenced ```sh / ```bash blocks (a `\\` continues a line; a
line that is only a comment is prose) and the `./scripts/...` synopses of operations.md's table.
A fence may name where its lines run, e.g. ```sh on=gateways (each host of the group) or
on=gw-a; otherwise a line runs on the operator's machine and `ssh HOST CMD` runs CMD on HOST.

Classification: a line is executed when every simple command in it (recursively through `ssh`)
is read-only (curl GETs, journalctl, systemctl status/is-active/show, ip ... show, ss, cat/ls/tail
of paths, promtool/amtool queries, `--help`/`--list` of our scripts...). Anything else (a restart,
a drain, a deploy, a restore) is checked only: the script exists and knows every option the line
uses, the binary is on the host, the systemd unit exists.

Executed lines must exit 0 with no error on stderr; besides, on every executed or checked line:
absolute paths exist on the host they are used on, journalctl's units and syslog identifiers
have entries, and every metric name of a PromQL query (promtool, /api/v1/query) is known to
Prometheus (a series, scrape metadata or a recording rule); a query must return data.

Directives (a trailing comment `#: WORD reason` on the line; documented in docs/runbooks/alerts.md):
  may-fail    the exit status is not asserted (e.g. a file that exists only while the alert fires)
  empty-ok    the PromQL query may return nothing on a healthy system
  check-only  not executed even though read-only (slow, or needs the alert's condition)
  not-in-lab  production only (the lab lacks it, e.g. chrony): counted, neither run nor checked

On the operator's machine the lab hosts' names resolve to their lab addresses (what DNS or the
SSH config does for a real environment); `ssh HOST` is `scripts/lab.sh shell HOST` (docker exec).
With --ssh (staging, production: hosts made by OpenTofu, the inventory from the bridge) the names
resolve to the hosts' public addresses (ansible_host) and `ssh HOST` is ssh as Ansible connects:
ansible_user, the inventory's ssh options (its known_hosts only, strict), the operator's ssh
config. $PROM and $AM are Prometheus and Alertmanager as the operator reaches them: in a lab
straight (http://$MON:9090), with --ssh through an SSH tunnel to $MON that this script opens as
alerts.md says (the cloud firewall admits SSH only).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUNBOOK_GLOB = "docs/runbooks/*.md"
OPERATIONS_DOC = "docs/operations.md"
FENCE_LANGUAGES = frozenset({"sh", "bash", "shell"})
DIRECTIVES = frozenset({"may-fail", "empty-ok", "check-only", "not-in-lab"})
COMMAND_TIMEOUT_S = 60

# --- extraction --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: str  # repository-relative path
    line: int
    text: str  # the command without its trailing directive comment
    on: str = ""  # fence's on=HOST|GROUP ("" = the operator's machine)
    directives: frozenset[str] = frozenset()
    synopsis: bool = False  # a usage line (operations.md table): options are checked, never run

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def strip_comment(line: str) -> tuple[str, str]:
    """(command, comment): a `#` starting a word outside quotes begins the comment, as in bash."""
    quote = ""
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t;&|("):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def parse_directives(comment: str, where: str) -> frozenset[str]:
    if not comment.startswith(":"):
        return frozenset()
    words = comment[1:].split()
    if not words or words[0] not in DIRECTIVES:
        raise ValueError(
            f"{where}: unknown runbook-check directive '#:{comment[1:]}'"
            f" (one of: {', '.join(sorted(DIRECTIVES))})"
        )
    return frozenset({words[0]})


FENCE_RE = re.compile(r"^(\s*)(```+|~~~+)\s*([A-Za-z0-9_+-]*)(.*)$")


def extract_fenced(doc: str, text: str) -> list[Command]:
    """The command lines of the shell fences of a Markdown document."""
    commands: list[Command] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang, info = m.group(1), m.group(2), m.group(3).lower(), m.group(4)
        on = ""
        for word in info.split():
            if word.startswith("on="):
                on = word[3:]
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(
                (i + 1, lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            )
            i += 1
        i += 1  # the closing fence
        if lang not in FENCE_LANGUAGES:
            continue
        pending = ""
        start = 0
        for number, raw in body:
            if not pending:
                start = number
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            full = pending + raw
            pending = ""
            command, comment = strip_comment(full)
            if not command.strip():
                continue  # blank, or a comment line: prose for the reader
            where = f"{doc}:{start}"
            commands.append(Command(doc, start, command.strip(), on, parse_directives(comment, where)))
    return commands


def extract_synopses(doc: str, text: str) -> list[Command]:
    """The `./scripts/...` code spans of the first table of operations.md (its command index)."""
    commands: list[Command] = []
    in_table = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("|"):
            in_table = True
            for span in re.findall(r"`([^`]+)`", line.replace("\\|", "|")):
                if span.startswith("./scripts/"):
                    commands.append(Command(doc, number, span, synopsis=True))
        elif in_table:
            break
    return commands


INLINE_COMMAND = re.compile(
    r"^(?:\./scripts/|scripts/[\w/-]+\.sh\b|(?:systemctl|journalctl|amtool|nginx|dmesg|ip) "
    r"|/(?:etc|usr)/\S+$)"
)
ANY_HOST = "*"  # an inline command of the prose: what it names must exist on some host


def extract_inline(doc: str, text: str) -> list[Command]:
    """Commands and installed paths named in the prose (`systemctl restart nginx`,
    `/etc/keepalived/vip.toml`): never run, checked for existence on some host of the lab."""
    commands: list[Command] = []
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE_RE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if INLINE_COMMAND.match(span) and "..." not in span:
                commands.append(Command(doc, number, span, on=ANY_HOST, directives=frozenset({"check-only"})))
    return commands


def extract_all(repo: Path = REPO) -> list[Command]:
    commands: list[Command] = []
    for path in sorted(repo.glob(RUNBOOK_GLOB)):
        text = path.read_text(encoding="utf-8")
        commands += extract_fenced(str(path.relative_to(repo)), text)
        commands += extract_inline(str(path.relative_to(repo)), text)
    ops = repo / OPERATIONS_DOC
    commands += extract_synopses(OPERATIONS_DOC, ops.read_text(encoding="utf-8"))
    for cmd in commands:
        if cmd.synopsis:
            continue
        try:
            split_simple(cmd.text)
        except ValueError as exc:  # what a shell would refuse too: the runbook is wrong
            raise ValueError(f"{cmd.where}: not a shell command line ({exc}): {cmd.text}") from None
    return commands


# --- placeholders ------------------------------------------------------------------------------


@dataclass
class Inventory:
    groups: dict[str, list[str]]
    hostvars: dict[str, dict[str, str]]
    allvars: dict[str, str]

    def ip(self, host: str) -> str:
        return self.hostvars[host].get("ngd_private_ip", host)

    def first(self, group: str) -> str:
        hosts = self.groups.get(group) or []
        if not hosts:
            raise ValueError(f"the inventory has no host in group '{group}'")
        return hosts[0]

    def hosts_of(self, name: str) -> list[str]:
        """on=NAME: a group's hosts, or the host itself (ANY_HOST: every host, and the operator's)."""
        if name == ANY_HOST:
            return ["", *self.hostvars]
        if name in self.groups:
            return list(self.groups[name])
        if name in self.hostvars:
            return [name]
        raise ValueError(f"on={name}: neither a group nor a host of the inventory")


def load_inventory(path: Path) -> Inventory:
    import yaml  # noqa: PLC0415 - the tool venv's PyYAML; not needed for --list

    data = yaml.safe_load(path.read_text(encoding="utf-8"))["all"]
    groups: dict[str, list[str]] = {}
    hostvars: dict[str, dict[str, str]] = {}
    for group, body in (data.get("children") or {}).items():
        hosts = (body or {}).get("hosts") or {}
        groups[group] = list(hosts)
        for host, hvars in hosts.items():
            hostvars.setdefault(host, {}).update({k: str(v) for k, v in (hvars or {}).items()})
    allvars = {k: str(v) for k, v in (data.get("vars") or {}).items()}
    return Inventory(groups, hostvars, allvars)


def placeholders(
    inv: Inventory, sink: str, env: str = "lab", prometheus: str = "", alertmanager: str = ""
) -> tuple[dict[str, str], dict[str, str]]:
    """(shell variables, textual placeholders) of the runbooks' conventions (alerts.md's top).
    prometheus/alertmanager: their URLs as the operator reaches them (default: the monitoring
    host's name and the ports of ports.yml, as in a lab)."""
    gateways = inv.groups.get("gateways") or []
    if len(gateways) < 2:
        raise ValueError("the inventory needs two gateways (group gateways)")
    mon = inv.first("monitoring")
    variables = {
        "GW": gateways[0],
        "PEER": gateways[1],
        "MON": mon,
        "SINK": sink,
        "PROM": prometheus or f"http://{mon}:9090",
        "AM": alertmanager or f"http://{mon}:9093",
    }
    text = {
        "<VIP>": inv.allvars.get("ngd_vip", ""),
        "<ngd_vip_interface>": inv.allvars.get("ngd_vip_interface", "eth0"),
        "<instance>": gateways[0],
        "<peer_ip>": inv.ip(gateways[1]),
        "<collector_ip>": inv.ip(inv.first("collectors")),
        "ENV": env,
    }
    return variables, text


def substitute(text: str, variables: dict[str, str], textual: dict[str, str]) -> str:
    """Fill the placeholders (for analysis: the shell fills $VARS itself when it runs the line)."""
    for key, value in textual.items():
        text = (
            re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", value, text)
            if key.isalnum()
            else text.replace(key, value)
        )
    for key, value in variables.items():
        text = re.sub(rf"\$(?:{key}\b|\{{{key}\}})", value, text)
    return text


def unknown_placeholders(text: str) -> list[str]:
    """`<word>` placeholders left after substitution (a line that is run must have none)."""
    return re.findall(r"<[A-Za-z_][\w-]*>", text)


# --- shell words -------------------------------------------------------------------------------

CONTROL = frozenset({";", "&&", "||", "|", "&", "(", ")", ";;", "|&"})
REDIRECT = re.compile(r"^[0-9]*(<|>|>>|<<|<<<|>&|<&|&>|&>>)$")
RESERVED = frozenset({"do", "done", "then", "fi", "else", "elif", "if", "while", "until", "{", "}", "!"})


@dataclass(frozen=True)
class Simple:
    """One simple command, and the host it runs on ("" = the operator's machine)."""

    argv: tuple[str, ...]
    host: str = ""


def split_simple(line: str, host: str = "") -> list[Simple]:
    """The simple commands of a line; an `ssh HOST CMD` contributes CMD's commands on HOST (for
    each word of a `for NAME in WORDS` loop when HOST is $NAME)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    lexer.commenters = ""
    tokens = list(lexer)
    out: list[Simple] = []
    current: list[str] = []
    loops: dict[str, list[str]] = {}
    loop_var = ""  # inside `for NAME in WORDS`: the words are data

    def flush() -> None:
        if current:
            out.extend(expand_ssh(Simple(tuple(current), host), loops))
            current.clear()

    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in CONTROL:
            flush()
            loop_var = ""
        elif loop_var:
            if tok != "in":
                loops[loop_var].append(tok)
        elif not current and tok == "for" and i + 1 < len(tokens):
            loop_var = tokens[i + 1]
            loops[loop_var] = []
            i += 1
        elif not current and tok in RESERVED:
            pass
        elif REDIRECT.match(tok) or (tok.isdigit() and i + 1 < len(tokens) and REDIRECT.match(tokens[i + 1])):
            if tok.isdigit():
                i += 1
            i += 1  # the redirection's target
        else:
            current.append(tok)
        i += 1
    flush()
    return out


SSH_OPTIONS_WITH_ARG = frozenset("bcDEeFIiJLlmOoPpQRSWw")


def expand_ssh(cmd: Simple, loops: dict[str, list[str]]) -> list[Simple]:
    argv = list(cmd.argv)
    if not argv or argv[0] != "ssh":
        return [cmd]
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i][-1] in SSH_OPTIONS_WITH_ARG and len(argv[i]) == 2 else 1
    if i >= len(argv):
        return [cmd]
    target = argv[i]
    remote = " ".join(argv[i + 1 :])
    var = re.fullmatch(r"\$\{?(\w+)\}?", target)
    targets = loops.get(var.group(1), [target]) if var else [target]
    if not remote:
        return [Simple(("ssh", t), cmd.host) for t in targets]
    return [s for t in targets for s in split_simple(remote, t)]


# --- classification ----------------------------------------------------------------------------

ALWAYS_READ_ONLY = frozenset(
    [
        "cat",
        "ls",
        "tail",
        "head",
        "grep",
        "egrep",
        "awk",
        "sort",
        "uniq",
        "wc",
        "df",
        "du",
        "free",
        "ps",
        "uptime",
        "echo",
        "true",
        "printf",
        "ping",
        "ss",
        "iostat",
        "jq",
        "test",
        "date",
        "hostname",
        "id",
        "cut",
        "tr",
        "getent",
        "nproc",
        "ntpq",
        "findmnt",
        "lsblk",
        "stat",
        "openssl",
        "uname",
        "which",
        "type",
        "command",
        "sleep",
    ]
)
SYSTEMCTL_READ = frozenset(
    [
        "status",
        "is-active",
        "is-enabled",
        "is-failed",
        "show",
        "cat",
        "list-units",
        "list-unit-files",
        "list-timers",
    ]
)
JOURNALCTL_WRITE = ("--vacuum", "--rotate", "--flush", "--sync", "--relinquish-var", "--setup-keys")
CURL_WRITE = re.compile(r"^(-d|--data.*|-F|--form.*|-T|--upload-file|-O|--remote-name.*|-X|--request)$")
IP_WRITE = frozenset(["add", "del", "delete", "flush", "set", "change", "replace", "append"])
CHRONYC_READ = frozenset(["tracking", "sources", "sourcestats", "activity", "ntpdata"])
AMTOOL_READ = (("check-config",), ("alert",), ("alert", "query"), ("silence", "query"), ("config", "routes"))


def is_read_only(argv: Sequence[str]) -> bool:
    """True when the simple command only reads (safe to run on a production host at any time)."""
    if not argv:
        return True
    args = list(argv)
    if args[0] == "sudo":
        return is_read_only(args[1:])
    name = args[0].rsplit("/", 1)[-1]
    rest = args[1:]
    if "--help" in rest or ("-h" in rest and name.endswith((".sh", ".py"))):
        return True
    if name in ALWAYS_READ_ONLY:
        return not (name == "sed" and any(a.startswith("-i") for a in rest))
    if name == "systemctl":
        verbs = [a for a in rest if not a.startswith("-")]
        if rest[:1] == ["kill"] and rest[1:] in (["-s", sig, "keepalived"] for sig in ("USR1", "USR2")):
            return True  # keepalived's data/stats dump: writes a file under /tmp, changes nothing
        return (not verbs and "--failed" in rest) or bool(verbs and verbs[0] in SYSTEMCTL_READ)
    if name == "journalctl":
        return not any(a.startswith(JOURNALCTL_WRITE) for a in rest)
    if name == "curl":
        for i, a in enumerate(rest):
            if CURL_WRITE.match(a):
                method = rest[i + 1].upper() if a in ("-X", "--request") and i + 1 < len(rest) else "POST"
                if method not in ("GET", "HEAD"):
                    return False
            if a in ("-o", "--output") and i + 1 < len(rest) and rest[i + 1] != "/dev/null":
                return False
        return True
    if name == "ip":
        return not any(a in IP_WRITE for a in rest)
    if name == "top":
        return "-b" in rest
    if name == "dmesg":
        return not any(a in ("-C", "-c", "--clear", "--read-clear", "-n", "--console-level") for a in rest)
    if name == "timedatectl":
        return not rest or rest[0] in ("status", "show", "timesync-status", "show-timesync")
    if name == "chronyc":
        return bool(rest) and rest[0] in CHRONYC_READ
    if name == "promtool":
        return bool(rest) and rest[0] in ("query", "check")
    if name == "amtool":
        words = tuple(a for a in rest if not a.startswith("-"))
        return any(words[: len(r)] == r for r in AMTOOL_READ)
    if name == "nginx":
        return rest in (["-t"], ["-T"])
    if name == "tcpdump":
        return "-c" in rest and not any(a.startswith("-w") for a in rest)
    if name in ("python3", "python"):
        return rest[:2] == ["-m", "json.tool"]
    if name == "notify.py":
        return "reconcile" in rest and "--no-fix" in rest
    if name == "rollback.sh":
        return "--list" in rest
    return False


def classify(cmd: Command, simples: Sequence[Simple]) -> str:
    """'run', 'check' or 'skip' (not-in-lab)."""
    if "not-in-lab" in cmd.directives:
        return "skip"
    if cmd.synopsis or "check-only" in cmd.directives:
        return "check"
    return "run" if all(is_read_only(s.argv) for s in simples) else "check"


# --- what a command names ----------------------------------------------------------------------

PROMQL_WORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
        "le",
        "inf",
        "nan",
    ]
)


def promql_metrics(expr: str) -> set[str]:
    """Metric names of a PromQL expression (not functions, keywords, labels or durations)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"[0-9.]+[smhdwy]?", word):
            continue
        names.add(word)
    return names


@dataclass(frozen=True)
class Query:
    expr: str
    empty_ok: bool


def queries(simples: Iterable[Simple], empty_ok: bool) -> list[Query]:
    """PromQL expressions of promtool lines and of Prometheus /api/v1/query URLs."""
    found = []
    for s in simples:
        argv = list(s.argv)
        if argv[:3] == ["promtool", "query", "instant"] and len(argv) >= 5:
            found.append(Query(argv[4], empty_ok))
        for a in argv:
            if "/api/v1/query?" in a:
                qs = urllib.parse.parse_qs(urllib.parse.urlsplit(a).query)
                found += [Query(q, empty_ok) for q in qs.get("query", [])]
    return found


def is_lone_path(argv: Sequence[str]) -> bool:
    return len(argv) == 1 and argv[0].startswith("/")


def named_paths(argv: Sequence[str]) -> list[str]:
    """Absolute paths an argument list names (not devices, /proc, /sys, nor /tmp, where a command
    may create what it then reads); a lone path (an inline `/etc/...` of the prose) names itself."""
    paths = []
    for a in argv if is_lone_path(argv) else argv[1:]:
        if a.startswith("/") and not a.startswith(("/dev/", "/proc/", "/sys/", "/tmp/")) and "\n" not in a:
            paths.append(a)
    return paths


def journal_matches(argv: Sequence[str]) -> list[tuple[str, str]]:
    """journalctl's -u UNIT / -t IDENTIFIER arguments."""
    if not argv or argv[0].rsplit("/", 1)[-1] != "journalctl":
        return []
    out = []
    for i, a in enumerate(argv):
        for flag, kind in (("-u", "unit"), ("--unit", "unit"), ("-t", "tag"), ("--identifier", "tag")):
            if a == flag and i + 1 < len(argv):
                out.append((kind, argv[i + 1]))
            elif a.startswith(flag + "=") and flag.startswith("--"):
                out.append((kind, a.split("=", 1)[1]))
    return out


SYSTEMCTL_VALUE_OPTIONS = frozenset(
    [
        "-s",
        "--signal",
        "-p",
        "--property",
        "-t",
        "--type",
        "--state",
        "-H",
        "--host",
        "-M",
        "-n",
        "--lines",
        "-o",
    ]
)


def systemctl_units(argv: Sequence[str]) -> list[str]:
    if not argv or argv[0].rsplit("/", 1)[-1] != "systemctl":
        return []
    words = []
    skip = False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a in SYSTEMCTL_VALUE_OPTIONS:
            skip = True
        elif not a.startswith("-"):
            words.append(a)
    return words[1:] if words and words[0] not in ("list-units", "list-unit-files", "list-timers") else []


# --- the firewall, statically -------------------------------------------------------------------

HOST_GROUPS = {"$GW": "gateways", "$PEER": "gateways", "$MON": "monitoring", "$h": "gateways"}


def admin_ports(repo: Path = REPO) -> dict[str, set[int]]:
    """Per inventory group, the ports its firewall admits from the administrators' networks
    (ansible/group_vars/GROUP/firewall.yml rules whose sources are ngd_admin_cidrs)."""
    import yaml  # noqa: PLC0415 - the tool venv's PyYAML, as in load_inventory

    ports = yaml.safe_load((repo / "ansible/group_vars/all/ports.yml").read_text(encoding="utf-8"))
    out: dict[str, set[int]] = {}
    for path in sorted(repo.glob("ansible/group_vars/*/firewall.yml")):
        rules = yaml.safe_load(path.read_text(encoding="utf-8")).get("firewall_rules") or []
        admitted: set[int] = set()
        for rule in rules:
            if "ngd_admin_cidrs" not in str(rule.get("sources", "")):
                continue
            for port in rule["port"] if isinstance(rule["port"], list) else [rule["port"]]:
                name = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", str(port))
                admitted.add(int(ports[name.group(1)]) if name else int(port))
        out[path.parent.name] = admitted
    return out


def firewall_refusals(commands: Iterable[Command], open_ports: dict[str, set[int]]) -> list[str]:
    """Commands run on the operator's machine that connect to a node's port its firewall refuses
    the administrators (e.g. a gateway's 5679, open to the monitoring host only): they must run
    on a host that may connect (`ssh $GW curl localhost:5679/...`)."""
    problems: list[str] = []
    for cmd in commands:
        if cmd.on or cmd.synopsis:
            continue
        for s in split_simple(cmd.text):
            if s.host:
                continue
            for arg in s.argv:
                for m in re.finditer(r"(?:https?://|^)(\$\w+|[a-z][\w-]*):(\d+)", arg):
                    group = HOST_GROUPS.get(m.group(1))
                    if (
                        group
                        and int(m.group(2)) not in open_ports.get(group, set())
                        and not any(
                            p.startswith(f"{cmd.where}: {m.group(1)}:{m.group(2)} ") for p in problems
                        )
                    ):
                        admitted = sorted(open_ports.get(group, set())) or "SSH"
                        problems.append(
                            f"{cmd.where}: {m.group(1)}:{m.group(2)} from the operator's machine: the {group}"
                            f" firewall admits only {admitted} from the admin networks; run it there"
                            f" (ssh {m.group(1)} ...)"
                        )
    return problems


# --- running against a lab -----------------------------------------------------------------------

ERROR_PATTERNS = re.compile(
    r"command not found|No such file or directory|could not be found|Failed to connect|Connection refused"
    r"|Could not resolve host|unrecognized option|invalid option|Unknown option|No journal files"
    r"|Permission denied|Operation timed out|Connection timed out|error: |Error: |bad_data",
    re.IGNORECASE,
)


@dataclass
class Result:
    cmd: Command
    mode: str  # run / check / skip
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Lab:
    name: str
    inv: Inventory
    lab_sh: Path
    variables: dict[str, str]
    textual: dict[str, str]
    prometheus: str  # URL the operator's machine reaches

    def address(self, host: str) -> str:
        """The address the operator's machine reaches HOST at."""
        return self.inv.ip(host)

    def ssh_function(self) -> str:
        """`ssh HOST CMD...` of the operator's machine: CMD runs on HOST, through the lab (docker
        exec), as root like ssh root@HOST."""
        return (
            "ssh() { while [[ $1 == -* ]]; do"
            " case $1 in -[bcDEeFIiJLlmOoPpQRSWw]) shift 2 ;; *) shift ;; esac; done;"
            f" local h=${{_NGD_NAME[$1]:-$1}}; shift; NGD_LAB={shlex.quote(self.name)}"
            f' {shlex.quote(str(self.lab_sh))} shell "$h" bash -c "$*" </dev/null; }}'
        )

    def host_argv(self, host: str, text: str) -> list[str]:
        """The command line that runs TEXT with bash on HOST."""
        return [str(self.lab_sh), "shell", host, "bash", "-c", text]

    def prelude(self) -> str:
        """Shell definitions for a line run on the operator's machine."""
        names = {h: self.address(h) for h in self.inv.hostvars}
        rewrite = "".join(
            f"case $x in {h}) x={ip} ;; {h}:*) x={ip}:${{x#{h}:}} ;;"
            f' *//{h}[:/]*) x=${{x/"//{h}"/"//{ip}"}} ;; esac; '
            for h, ip in names.items()
        )
        to_name = " ".join(f"[{ip}]={h}" for h, ip in names.items())
        lines = [
            *(f"{k}={shlex.quote(v)}" for k, v in self.variables.items()),
            f"declare -A _NGD_NAME=({to_name})",
            self.ssh_function(),
            # The hosts' names, resolved as DNS would for the operator.
            f'_ngd_args() {{ _NGD_ARGS=(); local x; for x in "$@"; do {rewrite}_NGD_ARGS+=("$x"); done; }}',
            *(
                f'{tool}() {{ _ngd_args "$@"; command {tool} "${{_NGD_ARGS[@]}}"; }}'
                for tool in ("curl", "ping", "promtool", "amtool", "openssl", "nc")
            ),
        ]
        return "\n".join(lines) + "\n"

    def run_line(self, text: str, host: str = "") -> subprocess.CompletedProcess[str]:
        argv = self.host_argv(host, text) if host else ["bash", "-c", self.prelude() + text]
        try:
            return subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NGD_LAB": self.name},
                check=False,
                cwd=REPO,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return subprocess.CompletedProcess(argv, 124, out, f"timed out after {COMMAND_TIMEOUT_S} s")

    def prometheus_get(self, path: str) -> Any:
        with urllib.request.urlopen(self.prometheus + path, timeout=20) as resp:
            return json.load(resp)["data"]


@dataclass
class SshHosts(Lab):
    """Hosts reached as Ansible reaches them over SSH (staging, production): the inventory's
    ansible_host, ansible_user and ansible_ssh_common_args (its known_hosts, strict), the
    operator's own ssh (config, keys). One master connection per host (ControlPath in
    control_dir) keeps a hundred commands from costing a hundred handshakes."""

    control_dir: str = ""

    def address(self, host: str) -> str:
        return self.inv.hostvars.get(host, {}).get("ansible_host") or self.inv.ip(host)

    def ssh_options(self) -> list[str]:
        user = self.inv.allvars.get("ansible_user", "root")
        return [
            *shlex.split(self.inv.allvars.get("ansible_ssh_common_args", "")),
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=20",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.control_dir}/%C",
            "-o", "ControlPersist=120",
            "-l", user,
        ]  # fmt: skip

    def ssh_function(self) -> str:
        """`ssh HOST CMD...`: the real ssh with the inventory's options; CMD runs with bash there."""
        options = " ".join(shlex.quote(o) for o in self.ssh_options())
        to_address = " ".join(f"[{h}]={self.address(h)}" for h in self.inv.hostvars)
        return (
            f"declare -A _NGD_ADDR=({to_address})\n"
            "ssh() { while [[ $1 == -* ]]; do"
            " case $1 in -[bcDEeFIiJLlmOoPpQRSWw]) shift 2 ;; *) shift ;; esac; done;"
            " local h=${_NGD_NAME[$1]:-$1}; h=${_NGD_ADDR[$h]:-$h}; shift;"
            f' command ssh {options} "$h" "bash -c $(printf %q "$*")" </dev/null; }}'
        )

    def host_argv(self, host: str, text: str) -> list[str]:
        return ["ssh", *self.ssh_options(), self.address(host), "bash -c " + shlex.quote(text)]

    def tunnel(self, host: str, ports: Sequence[int]) -> tuple[subprocess.Popen[bytes], list[int]]:
        """`ssh -N -L` from free loopback ports of this machine to PORTS on HOST's loopback (what
        alerts.md tells the operator to do for Prometheus and Alertmanager); waits until it listens."""
        local = [_free_port() for _ in ports]
        forwards = [
            a for lp, rp in zip(local, ports, strict=True) for a in ("-L", f"127.0.0.1:{lp}:localhost:{rp}")
        ]
        # A connection of its own, in the foreground: ssh takes the first value of an option, so
        # these come before ssh_options' ControlMaster=auto (a master would go to the background
        # and this process exit at once, leaving the forwards to an unwatched master).
        proc = subprocess.Popen(
            ["ssh", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes",
             *self.ssh_options(), "-N", *forwards, self.address(host)],
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise OSError(f"ssh -L to {host} exited {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", local[0]), timeout=2):
                    return proc, local
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise OSError(f"ssh -L to {host} did not listen within 60 s") from None
                time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def known_metrics(lab: Lab) -> set[str]:
    """Every metric name Prometheus knows: series, scrape metadata (a labelled counter that never
    counted has no series yet) and recording rules."""
    names: set[str] = {str(n) for n in lab.prometheus_get("/api/v1/label/__name__/values")}
    metadata = lab.prometheus_get("/api/v1/metadata")
    names |= {str(n) for n in metadata} if isinstance(metadata, dict) else set()
    rules = lab.prometheus_get("/api/v1/rules")
    for group in rules["groups"] if isinstance(rules, dict) else []:
        names |= {r["name"] for r in group["rules"] if r.get("type") == "recording"}
    return names


def metric_known(name: str, known: set[str]) -> bool:
    if name in known:
        return True
    base = re.sub(r"_(bucket|sum|count|total|created)$", "", name)
    return base in known or f"{base}_total" in known


def host_checks(lab: Lab, checks: dict[str, set[tuple[str, str]]]) -> dict[tuple[str, str, str], bool]:
    """Existence checks, one shell per host: ('bin', NAME), ('path', GLOB), ('unit', U), ('tag', T)."""
    results: dict[tuple[str, str, str], bool] = {}
    for host, items in checks.items():
        ordered = sorted(items)
        script = []
        for kind, name in ordered:
            q = shlex.quote(name)
            test = {
                # A program on PATH, or a builtin: not one of the shell functions the operator's
                # machine gets here (curl, ping... resolve lab names), which would hide a missing one.
                "bin": f"{{ type -P {q} || [[ $(type -t {q}) == builtin ]]; }}",
                "path": f"compgen -G {q}",
                "unit": f"systemctl cat -- {q}",
                "unit-log": f'test -n "$(journalctl -u {q} -n 1 -q --no-pager)"',
                "tag": f'test -n "$(journalctl -t {q} -n 1 -q --no-pager)"',
            }[kind]
            script.append(f"if {test} >/dev/null 2>&1; then echo 1; else echo 0; fi")
        proc = lab.run_line("\n".join(script), host) if host else lab.run_line("\n".join(script))
        answers = proc.stdout.split()
        for (kind, name), answer in zip(
            ordered, answers + ["0"] * (len(ordered) - len(answers)), strict=True
        ):
            results[(host, kind, name)] = answer == "1"
    return results


@functools.cache
def script_help(path: Path) -> str:
    proc = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout + proc.stderr if proc.returncode == 0 else ""


def script_options(text: str) -> list[str]:
    """The long options a line (or a usage synopsis, `[--to V] [--a R | --b R]`) uses."""
    return re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)


def check_script(script: str, text: str) -> list[str]:
    """An operator script: it exists, answers --help, and knows every option the line uses."""
    path = REPO / script.removeprefix("./")
    if not path.is_file():
        return [f"{script}: no such script in the repository"]
    usage = script_help(path)
    if not usage:
        return [f"{script} --help failed"]
    return [
        f"{script}: option {opt} is not in its --help"
        for opt in script_options(text)
        if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", usage)
    ]


def name_problems(s: Simple, cmd: Command, exists: dict[tuple[str, str, str], bool]) -> list[str]:
    """What a simple command names and its host lacks: the program, paths, units, journal entries."""
    if s.argv[0].startswith(("./scripts/", "scripts/")):
        return check_script(s.argv[0], cmd.text)
    host = s.host
    argv = s.argv[1:] if s.argv[0] == "sudo" and len(s.argv) > 1 else s.argv
    problems = []
    if not is_lone_path(argv) and not exists.get((host, "bin", argv[0]), True):
        problems.append(f"{argv[0]}: not installed")
    if "may-fail" not in cmd.directives:
        problems += [f"{p}: no such path" for p in named_paths(argv) if not exists[(host, "path", p)]]
    for kind, name in journal_matches(argv):
        if not exists[(host, "unit-log" if kind == "unit" else "tag", name)]:
            problems.append(f"journalctl {'-u' if kind == 'unit' else '-t'} {name}: no entries")
    problems += [f"unit {u}: not found" for u in systemctl_units(argv) if not exists[(host, "unit", u)]]
    return problems


def hosts_for(lab: Lab, cmd: Command) -> list[str]:
    return lab.inv.hosts_of(cmd.on) if cmd.on else [""]


def verify(lab: Lab, commands: Sequence[Command], workers: int = 6) -> list[Result]:
    results = [Result(c, "") for c in commands]
    analysed: list[tuple[Result, list[str], list[Simple]]] = []
    checks: dict[str, set[tuple[str, str]]] = {}
    for res in results:
        cmd = res.cmd
        hosts = hosts_for(lab, cmd)
        text = substitute(cmd.text, lab.variables, lab.textual)
        if cmd.synopsis:
            simples = [Simple((text.split()[0],))]
        else:
            text = re.sub(r"<[A-Za-z_][\w-]*>", "PLACEHOLDER", text)
            simples = [s for h in hosts for s in split_simple(text, h)]
        res.mode = classify(cmd, simples)
        analysed.append((res, hosts, simples))
        if res.mode == "skip":
            continue
        for simple in simples:
            host = simple.host
            if simple.argv[0].startswith(("./scripts/", "scripts/")):
                continue
            # what sudo runs is what must exist on the host
            s = Simple(simple.argv[1:], host) if simple.argv[0] == "sudo" and len(simple.argv) > 1 else simple
            if not is_lone_path(s.argv):
                checks.setdefault(host, set()).add(("bin", s.argv[0]))
            for p in named_paths(s.argv) if "may-fail" not in cmd.directives else []:
                checks.setdefault(host, set()).add(("path", p))
            for kind, name in journal_matches(s.argv):
                checks.setdefault(host, set()).add(("unit-log" if kind == "unit" else "tag", name))
            for unit in systemctl_units(s.argv):
                checks.setdefault(host, set()).add(("unit", unit))
    exists = host_checks(lab, checks)
    metrics = known_metrics(lab)

    def one(item: tuple[Result, list[str], list[Simple]]) -> Result:
        res, hosts, simples = item
        cmd = res.cmd
        t0 = time.monotonic()
        if res.mode == "skip":
            return res
        if res.mode == "run" and unknown_placeholders(
            text := substitute(cmd.text, lab.variables, lab.textual)
        ):
            res.problems.append(
                f"placeholder(s) {', '.join(unknown_placeholders(text))} not defined in the conventions"
                " at the top of docs/runbooks/alerts.md"
            )
        if cmd.on == ANY_HOST:
            found: dict[tuple[str, ...], list[set[str]]] = {}
            for s in simples:
                found.setdefault(s.argv, []).append(set(name_problems(s, cmd, exists)))
            for sets in found.values():
                res.problems += sorted(f"{p} on any host" for p in set.intersection(*sets))
        else:
            for s in simples:
                where = f" on {s.host}" if s.host else " locally"
                res.problems += [
                    p if p.startswith("./scripts") else p + where for p in name_problems(s, cmd, exists)
                ]
        for q in queries(simples, "empty-ok" in cmd.directives):
            unknown = sorted(n for n in promql_metrics(q.expr) if not metric_known(n, metrics))
            if unknown:
                res.problems.append(f"PromQL {q.expr!r}: unknown metric(s) {', '.join(unknown)}")
            elif not q.empty_ok:
                try:
                    data = lab.prometheus_get("/api/v1/query?" + urllib.parse.urlencode({"query": q.expr}))
                    if not data["result"]:
                        res.problems.append(
                            f"PromQL {q.expr!r}: no data (mark it '#: empty-ok' if that is healthy)"
                        )
                except OSError as exc:
                    res.problems.append(f"PromQL {q.expr!r}: {exc}")
        if res.mode == "run":
            text = substitute(cmd.text, {}, lab.textual)
            for host in hosts:
                proc = lab.run_line(text, host)
                where = f" on {host}" if host else ""
                errors = [ln for ln in proc.stderr.splitlines() if ERROR_PATTERNS.search(ln)]
                if proc.returncode in (124, 126, 127) or (
                    proc.returncode and "may-fail" not in cmd.directives
                ):
                    res.problems.append(f"exit {proc.returncode}{where}: {_tail(proc.stderr or proc.stdout)}")
                elif errors and "may-fail" not in cmd.directives:
                    res.problems.append(f"error on stderr{where}: {_tail(chr(10).join(errors))}")
                elif any("command not found" in e for e in errors):
                    res.problems.append(f"command not found{where}: {_tail(chr(10).join(errors))}")
        res.seconds = time.monotonic() - t0
        return res

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, analysed))


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])[:400]


def gateway_sinks(lab: Lab, gateway: str) -> list[str]:
    """Sink names as the deployed gateway configures them (what the `sink` label carries)."""
    proc = lab.run_line("cat /etc/nanogridata/gateway.toml", gateway)
    return re.findall(r'^\[sinks\."?([^".\]]+)"?\]', proc.stdout, re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="extract and classify only (no lab)")
    ap.add_argument("--lab", default="deploy", help="the lab to run against (scripts/lab.sh --lab)")
    ap.add_argument("--inventory", type=Path, help="the lab's inventory (default: .lab/LAB/hosts.yml)")
    ap.add_argument(
        "--ssh",
        action="store_true",
        help="reach the hosts over SSH as the inventory says (staging, production), not through the lab",
    )
    ap.add_argument("--env", default="lab", help="the environment, for ENV in the runbooks (default: lab)")
    ap.add_argument("--prometheus-port", type=int, default=9090)
    ap.add_argument("--alertmanager-port", type=int, default=9093)
    ap.add_argument("--workers", type=int, default=6)
    args = ap.parse_args(argv)
    if args.ssh and not args.inventory:
        ap.error("--ssh needs --inventory (e.g. ansible/inventories/production/hosts.yml)")
    try:
        commands = extract_all()
    except ValueError as exc:
        print(f"runbook_check: {exc}", file=sys.stderr)
        return 2
    refused = firewall_refusals(commands, admin_ports())
    for problem in refused:
        print(f"FAIL {problem}", file=sys.stderr)
    if args.list:
        for cmd in commands:
            mode = classify(cmd, [] if cmd.synopsis else split_simple(cmd.text))
            print(f"{mode:5} {cmd.where}: {cmd.text}")
        return 1 if refused else 0
    inventory = args.inventory or REPO / ".lab" / args.lab / "hosts.yml"
    if not inventory.is_file():
        print(f"runbook_check: no inventory {inventory}: scripts/lab.sh up --lab {args.lab}", file=sys.stderr)
        return 2
    try:
        inv = load_inventory(inventory)
        mon = inv.first("monitoring")
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        print(f"runbook_check: {inventory} is not an inventory of the contract: {exc}", file=sys.stderr)
        return 2
    if not args.ssh:
        lab = Lab(args.lab, inv, REPO / "scripts/lab.sh", {}, {}, "")
        return report(lab, commands, refused, inv, args, f"http://{inv.ip(mon)}:{args.prometheus_port}", "")
    with tempfile.TemporaryDirectory(prefix="ngd-runbook-ssh-") as control_dir:
        hosts = SshHosts(args.env, inv, REPO / "scripts/lab.sh", {}, {}, "", control_dir)
        try:
            tunnel, (prom_port, am_port) = hosts.tunnel(mon, [args.prometheus_port, args.alertmanager_port])
        except OSError as exc:
            print(
                f"runbook_check: no SSH tunnel to Prometheus and Alertmanager on {mon}: {exc}",
                file=sys.stderr,
            )
            return 1
        try:
            return report(
                hosts,
                commands,
                refused,
                inv,
                args,
                f"http://127.0.0.1:{prom_port}",
                f"http://127.0.0.1:{am_port}",
            )
        finally:
            tunnel.terminate()
            tunnel.wait(timeout=30)
            for host in inv.hostvars:  # the master connections
                subprocess.run(
                    ["ssh", *hosts.ssh_options(), "-O", "exit", hosts.address(host)],
                    capture_output=True,
                    timeout=30,
                    check=False,
                )


def report(
    lab: Lab,
    commands: list[Command],
    refused: list[str],
    inv: Inventory,
    args: argparse.Namespace,
    prometheus: str,
    alertmanager: str,
) -> int:
    """Run the check against LAB, print one line per command and the counts; the exit status."""
    sinks = gateway_sinks(lab, inv.first("gateways"))
    if not sinks:
        print("runbook_check: the gateway's configuration names no sink", file=sys.stderr)
        return 1
    lab.variables, lab.textual = placeholders(
        inv, sinks[0], args.env, prometheus if args.ssh else "", alertmanager
    )
    lab.prometheus = prometheus
    started = time.monotonic()
    results = verify(lab, commands, args.workers)
    failed = [r for r in results if r.problems]
    for r in results:
        status = "FAIL" if r.problems else {"run": "ran", "check": "checked", "skip": "not-in-lab"}[r.mode]
        print(f"{status:10} {r.cmd.where}: {r.cmd.text}")
        for p in r.problems:
            print(f"           -> {p}")
    counts = {m: sum(r.mode == m for r in results) for m in ("run", "check", "skip")}
    print(
        f"runbook commands: {len(results)} total, {counts['run']} executed, {counts['check']} checked for "
        f"existence, {counts['skip']} not in the lab; {len(failed)} wrong"
        f" ({'over SSH, ' + args.env if args.ssh else 'lab ' + args.lab})"
        f" ({time.monotonic() - started:.0f} s)"
    )
    return 1 if failed or refused else 0


if __name__ == "__main__":
    sys.exit(main())
