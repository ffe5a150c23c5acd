"""Run a Prometheus-family binary (prometheus, alertmanager) on loopback for one test.

Shared by scrape_test.py and inhibition_test.py: a free port on 127.0.0.1, a temporary working
directory, the daemon's output in a log whose tail is printed when the test fails, and a stop
(terminate, then kill) that always runs, also on SIGTERM.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType


class Failure(Exception):
    """A test expectation was not met (the message says which)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Daemon:
    name: str
    url: str  # http://127.0.0.1:PORT
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]

    def wait_ready(self, timeout: float) -> None:
        """Poll /-/ready (both Prometheus and Alertmanager serve it) until 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"{self.name} exited early with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise Failure(f"{self.name} not ready at {self.url} after {timeout:.0f}s")


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def loopback_daemon(name: str, argv: Callable[[int, Path], list[str]]) -> Iterator[Daemon]:
    """Start `argv(port, workdir)`; yield the Daemon; on Failure print its log tail; always stop it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"ngd-{name}-"))
    port = free_port()
    log_path = workdir / f"{name}.log"
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv(port, workdir), stdout=log, stderr=subprocess.STDOUT)
            try:
                yield Daemon(name, f"http://127.0.0.1:{port}", port, workdir, proc)
            except (Failure, TimeoutError):
                log.flush()
                sys.stderr.write(log_path.read_text(errors="replace")[-2000:])
                raise
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(workdir, ignore_errors=True)


def alertmanager_argv(binary: str, config: Path) -> Callable[[int, Path], list[str]]:
    """Alertmanager alone on loopback (no cluster port), for loopback_daemon."""

    def argv(port: int, workdir: Path) -> list[str]:
        return [
            binary,
            f"--config.file={config}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    return argv


def amtool(url: str, *args: str) -> str:
    """amtool against the Alertmanager at `url`: its stdout, or Failure with its stderr."""
    proc = subprocess.run(
        ["amtool", f"--alertmanager.url={url}", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise Failure(f"amtool {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout
