"""check_queries.py's allow-list of panel queries that are legitimately empty in a healthy lab."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

GRAFANA_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(GRAFANA_DIR / "tools"))

import check_queries  # noqa: E402

ALLOW_FILE = GRAFANA_DIR / "ci" / "empty-in-healthy-lab.txt"
DASHBOARD = {
    "uid": "d1",
    "title": "D",
    "panels": [
        {
            "title": "Errors",
            "targets": [
                {"datasource": {"uid": "ngd-prometheus"}, "expr": "errors_total", "refId": "A"},
                {"datasource": {"uid": "ngd-prometheus"}, "expr": "requests_total", "refId": "B"},
            ],
        }
    ],
}


class _Prometheus(BaseHTTPRequestHandler):
    """/api/v1/query: data for requests_total, nothing for anything else, 400 for 'bad('."""

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)["query"][0]
        if query.startswith("bad("):
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"status":"error","error":"parse error"}')
            return
        result = [{"metric": {}, "value": [0, "1"]}] if query == "requests_total" else []
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def run(tmp_path: Path, prometheus: str, allow: str | None, dashboard: object = DASHBOARD) -> int:
    (tmp_path / "d.json").write_text(json.dumps(dashboard))
    args = ["--prometheus", prometheus, "--victoriametrics", prometheus, "--dashboards", str(tmp_path)]
    if allow is not None:
        (tmp_path / "allow.txt").write_text(allow)
        args += ["--allow-empty-file", str(tmp_path / "allow.txt")]
    return check_queries.main(args)


def test_empty_query_fails_without_the_allow_list(tmp_path: Path, prometheus: str) -> None:
    assert run(tmp_path, prometheus, None) == 1


def test_listed_empty_query_passes_and_says_why(
    tmp_path: Path, prometheus: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, prometheus, "d1 Errors / A  # never counted in a healthy lab\n") == 0
    assert "no data (allowed: never counted in a healthy lab)" in capsys.readouterr().out


def test_listing_allows_empty_only_not_an_error(tmp_path: Path, prometheus: str) -> None:
    broken = json.loads(json.dumps(DASHBOARD))
    broken["panels"][0]["targets"][0]["expr"] = "bad(errors_total"
    assert run(tmp_path, prometheus, "d1 Errors / A  # reason\n", broken) == 1


def test_an_entry_without_a_reason_is_refused(tmp_path: Path, prometheus: str) -> None:
    with pytest.raises(SystemExit, match="needs '# reason'"):
        run(tmp_path, prometheus, "d1 Errors / A\n")


def test_a_stale_entry_fails(tmp_path: Path, prometheus: str) -> None:
    assert run(tmp_path, prometheus, "d1 Errors / A  # reason\nd1 Renamed / A  # reason\n") == 1


def test_the_committed_allow_list_names_existing_queries_with_reasons() -> None:
    allowed = check_queries.load_allow_list(ALLOW_FILE)
    keys = {
        t.key
        for path in sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
        for t in check_queries.targets(json.loads(path.read_text()))
    }
    assert allowed, "the allow-list is empty: then drop --allow-empty-file from the lab check"
    assert set(allowed) <= keys, set(allowed) - keys
