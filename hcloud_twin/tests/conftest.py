"""Fixtures: a running twin on loopback, its token, an hcloud library client, an SSH public key."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hcloud import Client

from hcloud_twin import HcloudTwin


@pytest.fixture()
def token() -> str:
    return secrets.token_hex(32)  # 64 characters, as the provider demands; throw-away


@pytest.fixture()
def twin(token: str) -> Iterator[HcloudTwin]:
    with HcloudTwin(token, action_seconds=0.05) as server:
        yield server


@pytest.fixture()
def client(twin: HcloudTwin, token: str) -> Client:
    return Client(token=token, api_endpoint=twin.endpoint, poll_interval=0.05)


@pytest.fixture()
def public_key(tmp_path: Path) -> str:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(key)], check=True)
    return (tmp_path / "id_ed25519.pub").read_text().strip()


class Api:
    """Raw HTTP against the twin, for the shapes and codes the libraries hide."""

    def __init__(self, twin: HcloudTwin, token: str) -> None:
        self.base = twin.endpoint
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: object = None) -> requests.Response:
        return requests.request(method, self.base + path, headers=self.headers, json=body, timeout=10)


@pytest.fixture()
def api(twin: HcloudTwin, token: str) -> Api:
    return Api(twin, token)
