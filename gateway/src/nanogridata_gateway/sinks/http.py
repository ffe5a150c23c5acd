"""Pooled HTTP POST with the sinks' error classification (aiohttp, one session per sink)."""

from __future__ import annotations

import aiohttp

from ..delivery_config import SinkConfig
from .base import PermanentError, RetryableError

# 4xx answers that mean "later", not "never".
RETRYABLE_4XX = frozenset({408, 425, 429})


def classify_status(status: int, detail: str, location: str | None = None) -> Exception | None:
    """The outcome of one answer: None when the collector took the batch (2xx only), else the
    error to raise. A redirect is never followed: a followed POST turns into a GET whose 200 would
    confirm data the collector never received, so a 3xx is kept and retried, naming its target."""
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return RetryableError("http_3xx", f"HTTP {status} redirect to {location or '(no Location)'}")
    if 400 <= status < 500:
        if status in RETRYABLE_4XX:
            return RetryableError("http_4xx", f"HTTP {status}: {detail}")
        return PermanentError("http_4xx", status, detail)
    if 500 <= status < 600:
        return RetryableError("http_5xx", f"HTTP {status}: {detail}")
    return RetryableError("http_other", f"HTTP {status}: {detail}")


class HttpPoster:
    def __init__(self, config: SinkConfig, content_type: str) -> None:
        self._url = config.url
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        self._headers = {"Content-Type": content_type, **dict(config.headers)}
        self._limit = config.concurrency
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily: aiohttp sessions belong to the running loop.
            connector = aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def post(self, body: bytes, extra_headers: dict[str, str] | None = None) -> None:
        headers = self._headers if not extra_headers else {**self._headers, **extra_headers}
        try:
            async with self._get_session().post(
                self._url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await response.read()
                    return
                location = response.headers.get("Location")
                detail = (await response.text(errors="replace"))[:500]
        except TimeoutError as exc:
            raise RetryableError("timeout", f"no answer within {self._timeout.total}s") from exc
        except aiohttp.ClientError as exc:
            raise RetryableError("connect", f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise RetryableError("connect", str(exc)) from exc
        error = classify_status(status, detail, location)
        if error is not None:
            raise error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
