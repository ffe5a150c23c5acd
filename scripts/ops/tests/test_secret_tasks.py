"""`deploy.sh --check` runs Ansible with --diff and logs everything under logs/: a task that writes
a secret (vault values, API tokens, webhook URLs and routing keys, which are credentials) must show
no diff (`diff: false`) or nothing at all (`no_log: true`), or the secret lands in a log file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
ROLES = REPO / "ansible" / "roles"
SECRET = re.compile(r"\b(vault_\w+|\w+_token|\w+_secrets?|\w+_routing_key|\w+_webhook_url|\w+_deadman_url)\b")
WRITERS = ("ansible.builtin.template", "ansible.builtin.copy", "template", "copy")


def _defaults(role: Path) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in sorted((role / "defaults").rglob("*.yml")):
        values.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return values


def _template_text(role: Path, src: str, task: dict[str, Any]) -> str:
    """The template a task renders; variables in `src` are resolved through the role's defaults,
    a per-item template ("ngd-backup.{{ item }}.j2") stands for every file it can be, and
    `src: "{{ item }}"` for every file of the task's fileglob (with_fileglob or a loop over one)."""
    defaults = {**_defaults(role), "role_path": str(role)}
    if re.fullmatch(r"\{\{\s*item\s*\}\}", src.strip()):
        glob = re.search(r"fileglob',\s*(\w+)\s*~\s*'([^']+)'", str(task.get("loop", "")))
        if "with_fileglob" in task:
            src = str(task["with_fileglob"])
        elif glob:
            src = "{{ " + glob.group(1) + " }}" + glob.group(2)

    def resolve(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(defaults[name]) if name in defaults else "*"

    pattern = src
    for _ in range(5):  # defaults that name other variables
        pattern = re.sub(r"\{\{\s*(\w+)\s*\}\}", resolve, pattern)
    base = Path("/") if Path(pattern).is_absolute() else role / "templates"
    paths = sorted(base.glob(pattern.lstrip("/")))
    assert paths, f"{role.name}: no template matches {src} ({pattern})"
    return "\n".join(path.read_text(encoding="utf-8") for path in paths)


def _tasks(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for task in node if isinstance(node, list) else []:
        if isinstance(task, dict):
            found.append(task)
            for key in ("block", "rescue", "always"):
                found += _tasks(task.get(key))
    return found


def _writers() -> list[tuple[str, dict[str, Any], str]]:
    """(role/tasks file: task name, task, what it writes) for every template/copy task of a role."""
    found = []
    for tasks_file in sorted(ROLES.glob("*/tasks/*.yml")):
        role = tasks_file.parents[1]
        for task in _tasks(yaml.safe_load(tasks_file.read_text(encoding="utf-8"))):
            module = next((m for m in WRITERS if m in task), None)
            if module is None:
                continue
            args = task[module]
            if "src" in args and module.endswith("template"):
                written = _template_text(role, str(args["src"]), task)
            else:
                written = str(args.get("content", ""))
            found.append((f"{role.name}/tasks/{tasks_file.name}: {task.get('name')}", task, written))
    return found


WRITERS_FOUND = _writers()


def test_the_secret_bearing_writers_are_found() -> None:
    """The check sees the known secret-bearing files (so a parsing slip cannot pass it vacuously)."""
    names = " | ".join(name for name, _, written in WRITERS_FOUND if SECRET.search(written))
    for expected in ("alertmanager.yml", "secrets", "hcloud API token"):
        assert expected in names, names


@pytest.mark.parametrize(
    ("name", "task"),
    [(name, task) for name, task, written in WRITERS_FOUND if SECRET.search(written)],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_task_writing_a_secret_shows_no_diff(name: str, task: dict[str, Any]) -> None:
    assert task.get("no_log") is True or task.get("diff") is False, (
        f"{name} writes a secret: add `diff: false` (or `no_log: true`), "
        "so that --check --diff keeps it out of logs/"
    )
