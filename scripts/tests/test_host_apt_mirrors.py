"""scripts/lab/host_apt_mirrors.py: the mirror lab images are debootstrapped from."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "lab" / "host_apt_mirrors.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("host_apt_mirrors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mirrors = load_module()


def write(apt_dir: Path, name: str, text: str) -> None:
    path = apt_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_deb822_sources_give_main_and_security(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list.d/debian.sources",
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n",
    )
    assert mirrors.find_mirrors(tmp_path, "bookworm") == (
        "http://mirror.example/debian",
        "http://sec.example/debian-security",
    )


def test_one_line_sources_with_options_and_comments(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list",
        "# deb http://commented.example/debian bookworm main\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n",
    )
    main, security = mirrors.find_mirrors(tmp_path, "bookworm")
    assert main == "http://mirror.example/debian"
    # No security entry: same host, the standard path.
    assert security == "http://mirror.example/debian-security"


def test_disabled_stanza_and_other_suites_are_ignored(tmp_path: Path) -> None:
    write(
        tmp_path,
        "sources.list.d/a.sources",
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n",
    )
    write(tmp_path, "sources.list.d/b.list", "deb http://on.example/debian bookworm main\n")
    assert mirrors.find_mirrors(tmp_path, "bookworm")[0] == "http://on.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sources.list.d").mkdir()
    assert mirrors.main(["--apt-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no apt source for suite 'bookworm'" in err
    assert "LAB_MIRROR" in err
