"""Config loading: every bad key is named, secrets are required and protected, the CLI works."""

from __future__ import annotations

import datetime
import math
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanogridata_gateway.cli import main as cli_main
from nanogridata_gateway.config import load_config, read_secrets_file
from nanogridata_gateway.errors import ConfigError
from nanogridata_gateway.keys import derive_device_key, new_master_secret, secret_weakness

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "gateway.example.toml"
# as `nanogridata-gateway keygen` makes them: the loader refuses patterns like "ab" * 32
GOOD_SECRET = "0740e5be396e26bf223c744ded7a2367b89d89cdd6342ad08aedb8ea1e565d21"


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


PEER = '[peer]\nurl = "http://127.0.0.1:5681"\nlisten = "127.0.0.1:5681"\n'


@pytest.mark.parametrize(
    ("core", "delivery", "wording"),
    [
        # the same mistake in a core section and in a delivery section reads the same
        ("server = 1\n", "spool = 1\n", "must be a table, got int (expected a ["),
        ('[state]\ndir = ""\n', '[spool]\npath = ""\n', "(expected a non-empty string)"),
        ('[models."0x100"]\n', '[routes]\n"TELEMETRY.0x100" = ["debug"]\n', '"0x00" to "0xff" (0..255)'),
    ],
)
def test_core_and_delivery_sections_word_a_mistake_alike(
    tmp_path: Path, core: str, delivery: str, wording: str
) -> None:
    secrets = write_secrets(tmp_path / "s.toml")
    for snippet in (core, delivery):
        text = (
            MINIMAL.replace("[routes]\n", "[routes]\n" + snippet.split("\n", 1)[1])
            if "TELEMETRY." in snippet
            else snippet + MINIMAL
        )
        with pytest.raises(ConfigError) as err:
            load_config(write_config(tmp_path, text), secrets, env={})
        assert wording in str(err.value), (snippet, str(err.value))


def test_master_and_pair_secrets_are_checked_alike(tmp_path: Path) -> None:
    """One rule for every secret: hex, at least 32 bytes, random-looking."""
    cfg = write_config(tmp_path, MINIMAL + PEER)
    for value, problem in (
        ("zz" * 32, "not hexadecimal"),
        ("ab" * 16, "too short (16 bytes)"),
        ("00" * 32, "degenerate"),
    ):
        with pytest.raises(ConfigError) as master:
            load_config(
                cfg, env={"NANOGRIDATA_SECRET_MODEL_10": value, "NANOGRIDATA_PAIR_SECRET": GOOD_SECRET}
            )
        with pytest.raises(ConfigError) as pair:
            load_config(
                cfg, env={"NANOGRIDATA_SECRET_MODEL_10": GOOD_SECRET, "NANOGRIDATA_PAIR_SECRET": value}
            )
        assert (master.value.key, pair.value.key) == ("models.0x10.master_secret", "peer.secret")
        assert problem in master.value.problem and problem in pair.value.problem
        assert master.value.expected == pair.value.expected


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


def run_check_config(config: Path, secrets: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`nanogridata-gateway check-config` in a process of its own, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NANOGRIDATA_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nanogridata_gateway.cli",
            "check-config",
            "-c",
            str(config),
            "--secrets",
            str(secrets),
            *extra,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


PEER_SECRET = "3f0c9a1d5e7b2c8f4a6d0e1b9c3f5a7d2e8b4c6f0a1d3e5b7c9f2a4d6e8b0c1f"
ROUTED = MINIMAL.replace('[models."0x10"]\nname = "esp32"\n', "")
MALFORMED_CONFIGS = {
    "models not a table": (b"models = 5\n" + ROUTED.encode(), "models"),
    "route target a table": (
        MINIMAL.replace('TELEMETRY = ["debug"]', "TELEMETRY = [{a = 1}]").encode(),
        "routes.TELEMETRY",
    ),
    "listen port a superscript digit": (
        (MINIMAL + '[peer]\nurl = "http://10.0.0.2:5681"\nlisten = "h:²"\n').encode(),
        "peer.listen",
    ),
    "sink URL with an open bracket": (
        MINIMAL.replace(
            'type = "jsonl"\npath = "/tmp/x.jsonl"', 'type = "http_json"\nurl = "http://[::1"'
        ).encode(),
        "sinks.debug.url",
    ),
    "config not UTF-8": (MINIMAL.encode() + b"# caf\xe9\n", "config"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_CONFIGS))
def test_malformed_config_exits_2_naming_the_key(tmp_path: Path, case: str) -> None:
    text, key = MALFORMED_CONFIGS[case]
    config = tmp_path / "gateway.toml"
    config.write_bytes(text)
    secrets = write_secrets(tmp_path / "s.toml", ("0x10",))
    with secrets.open("a") as fh:
        fh.write(f'[peer]\nsecret = "{PEER_SECRET}"\n')
    proc = run_check_config(config, secrets)
    assert proc.returncode == 2, proc.stderr
    assert f"config error: {key}:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_secrets_file_not_utf8_exits_2_naming_it(tmp_path: Path) -> None:
    secrets = tmp_path / "s.toml"
    secrets.write_bytes(b"# caf\xe9\n" + f'[models."0x10"]\nmaster_secret = "{GOOD_SECRET}"\n'.encode())
    secrets.chmod(0o600)
    proc = run_check_config(write_config(tmp_path, MINIMAL), secrets)
    assert proc.returncode == 2, proc.stderr
    assert "config error: secrets.file:" in proc.stderr and "UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("secret_hex", "problem"),
    [
        ("00" * 32, "1 distinct byte values"),
        ("ff" * 48, "1 distinct byte values"),
        (bytes(range(32)).hex(), "regular sequence"),
        ("0123456789abcdeffedcba9876543210" * 2, "pattern repeated"),
        (b"correct horse battery staple!!!!".hex(), "distinct byte values"),
    ],
)
def test_degenerate_master_secret_is_refused_naming_keygen(
    tmp_path: Path, secret_hex: str, problem: str
) -> None:
    secrets = tmp_path / "s.toml"
    secrets.write_text(f'[models."0x10"]\nmaster_secret = "{secret_hex}"\n')
    secrets.chmod(0o600)
    proc = run_check_config(write_config(tmp_path, MINIMAL), secrets)
    assert proc.returncode == 2, proc.stderr
    assert "config error: models.0x10.master_secret:" in proc.stderr
    assert problem in proc.stderr and "nanogridata-gateway keygen" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_degenerate_pair_secret_is_refused(tmp_path: Path) -> None:
    secrets = write_secrets(tmp_path / "s.toml", ("0x10",))
    with secrets.open("a") as fh:
        fh.write(f'[peer]\nsecret = "{"00" * 32}"\n')
    config = write_config(
        tmp_path, MINIMAL + '[peer]\nurl = "http://10.0.0.2:5681"\nlisten = "10.0.0.1:5681"\n'
    )
    proc = run_check_config(config, secrets)
    assert proc.returncode == 2 and "config error: peer.secret: degenerate" in proc.stderr, proc.stderr


def test_keygen_secrets_pass_the_degeneracy_check() -> None:
    for _ in range(1000):
        assert secret_weakness(new_master_secret()) is None


# --- property tests: whatever the files hold, a config or a ConfigError naming a key ----------

EXAMPLE_DOC: dict[str, Any] = tomllib.loads(EXAMPLE.read_text())


def _toml_string(text: str) -> str:
    escaped = "".join(
        f"\\u{ord(c):04x}" if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F else c for c in text
    )
    return f'"{escaped}"'


def to_toml(value: Any) -> str:
    """TOML for any value tomllib can produce (inline tables and arrays all the way down)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {to_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def document(doc: dict[str, Any]) -> str:
    return "".join(f"{_toml_string(k)} = {to_toml(v)}\n" for k, v in doc.items())


def key_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a TOML document that holds a value: table keys and array items."""
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            paths += key_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            paths += key_paths(v, (*prefix, i))
    return paths


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: replaced(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = replaced(copy[head], rest, value)
    return copy


EXAMPLE_PATHS = key_paths(EXAMPLE_DOC)
toml_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.text(max_size=40),
    st.sampled_from(["", "0", "0x10", "²", "h:²", "http://[::1", "http://a:99999", "1e999GiB", "local"]),
    st.datetimes(timezones=st.none() | st.just(datetime.UTC)),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def assert_loads_or_names_a_key(config_text: str | bytes, secrets_text: str | bytes | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "gateway.toml"
        if isinstance(config_text, str):
            config_text = config_text.encode()
        config.write_bytes(config_text)
        secrets = write_secrets(Path(tmp) / "s.toml")
        if secrets_text is not None:
            secrets.write_bytes(secrets_text.encode() if isinstance(secrets_text, str) else secrets_text)
        try:
            load_config(config, secrets, env={})
        except ConfigError as exc:
            assert exc.key and str(exc).startswith(f"{exc.key}: "), repr(exc)


def test_the_serialiser_round_trips_the_example() -> None:
    assert tomllib.loads(document(EXAMPLE_DOC)) == EXAMPLE_DOC
    assert_loads_or_names_a_key(document(EXAMPLE_DOC), None)


@given(st.lists(st.tuples(st.sampled_from(EXAMPLE_PATHS), toml_values), min_size=1, max_size=3))
def test_any_value_at_any_key_loads_or_names_the_key(changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    doc: Any = EXAMPLE_DOC
    for path, value in changes:
        try:
            doc = replaced(doc, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this place
    assert_loads_or_names_a_key(document(doc), None)


@given(st.sampled_from(EXAMPLE_PATHS), st.text(min_size=1, max_size=12), toml_values)
def test_any_extra_key_loads_or_names_the_key(path: tuple[Any, ...], name: str, value: Any) -> None:
    parent = path[:-1]
    target: Any = EXAMPLE_DOC
    for part in parent:
        target = target[part]
    if isinstance(target, dict):
        assert_loads_or_names_a_key(document(replaced(EXAMPLE_DOC, parent, {**target, name: value})), None)


@given(st.binary(max_size=400))
def test_any_bytes_as_the_config_file_load_or_name_the_key(data: bytes) -> None:
    assert_loads_or_names_a_key(data, None)


@given(st.data())
def test_mutated_example_bytes_load_or_name_the_key(data: st.DataObject) -> None:
    text = bytearray(EXAMPLE.read_bytes())
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.integers(0, 255))
    assert_loads_or_names_a_key(bytes(text), None)


@given(st.binary(max_size=400))
def test_any_bytes_as_the_secrets_file_load_or_name_the_key(data: bytes) -> None:
    assert_loads_or_names_a_key(EXAMPLE.read_bytes(), data)


@given(
    st.dictionaries(
        st.sampled_from(["models", "peer", "other"]),
        toml_values | st.dictionaries(st.sampled_from(["0x10", "0x20", "0x30", "zz"]), toml_values),
        max_size=3,
    )
)
def test_any_secrets_document_loads_or_names_the_key(doc: dict[str, Any]) -> None:
    assert_loads_or_names_a_key(EXAMPLE.read_bytes(), document(doc))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.toml"
        path.write_text(document(doc))
        path.chmod(0o600)
        try:
            read_secrets_file(path)
        except ConfigError as exc:
            assert exc.key, repr(exc)
