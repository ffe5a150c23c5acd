"""Config loading: every bad key is named, secrets are required and protected, the CLI works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nanogridata_gateway.cli import main as cli_main
from nanogridata_gateway.config import load_config
from nanogridata_gateway.errors import ConfigError
from nanogridata_gateway.keys import derive_device_key

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "gateway.example.toml"
GOOD_SECRET = "ab" * 32


def write_secrets(path: Path, models: tuple[str, ...] = ("0x10", "0x20", "0x30"), mode: int = 0o600) -> Path:
    path.write_text("".join(f'[models."{m}"]\nmaster_secret = "{GOOD_SECRET}"\n' for m in models))
    path.chmod(mode)
    return path


def write_config(tmp_path: Path, text: str) -> Path:
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(text)
    return cfg


MINIMAL = """
[models."0x10"]
name = "esp32"
[sinks.debug]
type = "jsonl"
path = "/tmp/x.jsonl"
[routes]
TELEMETRY = ["debug"]
EVENT = ["debug"]
CONFIG = ["debug"]
COMMAND = ["local"]
"""


def test_example_config_loads(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, write_secrets(tmp_path / "s.toml"), env={})
    assert cfg.server.data_port == 5680 and cfg.server.metrics_port == 5679
    assert set(cfg.models) == {0x10, 0x20, 0x30} and cfg.models[0x30].high_security
    assert cfg.models[0x10].master_secret == bytes.fromhex(GOOD_SECRET)
    assert cfg.delivery is not None


@pytest.mark.parametrize(
    ("snippet", "key", "expected"),
    [
        ("[server]\ndata_prot = 1\n", "server.data_prot", "one of"),
        ("[server]\ndata_port = 70000\n", "server.data_port", "an integer from 0 to 65535"),
        ('[server]\ndata_port = "5680"\n', "server.data_port", "an integer"),
        ('[server]\nproxy_protocol = "yes"\n', "server.proxy_protocol", '"off" | "v1" | "v2" | "any"'),
        ("[server]\nworkers = 2\n", "server.workers", "workers = 1"),
        ("[server]\nreuse_port = 1\n", "server.reuse_port", "true or false"),
        ('[server]\ndrain_allow = ["10.0.0.0/33"]\n', "server.drain_allow", "a list of networks"),
        ("[protocol]\nmax_age_s = -1\n", "protocol.max_age_s", "a number from"),
        ('[log]\nlevel = "loud"\n', "log.level", '"debug"'),
        ("[bogus]\nx = 1\n", "bogus", "one of"),
        ('[models."0x10"]\nsecurity = "max"\n', "models.0x10.security", '"normal" | "high"'),
        ('[models."0x10"]\ncolour = "red"\n', "models.0x10.colour", "unknown key"),
        ('[models."0x1000"]\n', "models.0x1000", "a quoted model id"),
        ('[models."0x10"]\nmaster_secret = "00"\n', "models.0x10.master_secret", "the secrets file"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, snippet: str, key: str, expected: str) -> None:
    cfg = write_config(
        tmp_path,
        MINIMAL.replace('[models."0x10"]\nname = "esp32"\n', "") + snippet
        if snippet.startswith('[models."0x10"]')
        else MINIMAL + snippet,
    )
    with pytest.raises(ConfigError) as err:
        load_config(cfg, write_secrets(tmp_path / "s.toml"), env={})
    assert err.value.key == key, str(err.value)
    assert expected in str(err.value)


def test_missing_and_short_secrets_refused(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match=r"models\.0x10\.master_secret: missing"):
        load_config(cfg, env={})
    short = tmp_path / "short.toml"
    short.write_text('[models."0x10"]\nmaster_secret = "' + "ab" * 31 + '"\n')
    short.chmod(0o600)
    with pytest.raises(ConfigError, match=r"too short \(31 bytes\)"):
        load_config(cfg, short, env={})
    with pytest.raises(ConfigError, match="not hexadecimal"):
        load_config(cfg, env={"NANOGRIDATA_SECRET_MODEL_10": "zz" * 32})
    ok = load_config(cfg, env={"NANOGRIDATA_SECRET_MODEL_10": GOOD_SECRET})
    assert ok.models[0x10].master_secret == bytes.fromhex(GOOD_SECRET)


def test_secrets_file_must_be_private(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, MINIMAL)
    with pytest.raises(ConfigError, match="mode 0640"):
        load_config(cfg, write_secrets(tmp_path / "s.toml", mode=0o640), env={})


def test_delivery_errors_name_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, MINIMAL.replace('COMMAND = ["local"]', 'COMMAND = ["nowhere"]'))
    with pytest.raises(ConfigError) as err:
        load_config(cfg, write_secrets(tmp_path / "s.toml", ("0x10",)), env={})
    assert err.value.key == "routes.COMMAND"


def test_cli_check_config_and_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = write_secrets(tmp_path / "s.toml")
    assert cli_main(["check-config", "-c", str(EXAMPLE), "--secrets", str(secrets)]) == 0
    assert '"ok": true' in capsys.readouterr().out
    bad = write_config(tmp_path, MINIMAL + "[server]\nmax_connections = 0\n")
    assert cli_main(["check-config", "-c", str(bad), "--secrets", str(secrets)]) == 2
    assert "server.max_connections" in capsys.readouterr().err
    assert cli_main(["keygen"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(bytes.fromhex(secret)) == 32
    assert cli_main(["derive-key", "--model", "0x10", "--device", "0x2a", "--secret-hex", secret]) == 0
    assert capsys.readouterr().out.strip() == derive_device_key(bytes.fromhex(secret), 0x10, 42).hex()
    assert (
        cli_main(
            ["derive-key", "--model", "0x10", "--device", "7", "-c", str(EXAMPLE), "--secrets", str(secrets)]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == derive_device_key(bytes.fromhex(GOOD_SECRET), 0x10, 7).hex()


def test_serve_refuses_missing_secret(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, MINIMAL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOGRIDATA_")}
    proc = subprocess.run(
        [sys.executable, "-m", "nanogridata_gateway.cli", "serve", "-c", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "models.0x10.master_secret: missing" in proc.stderr
