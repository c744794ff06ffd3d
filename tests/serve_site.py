"""Helpers of the ``dataferry serve`` tests: the app under a real uvicorn server in a thread on a
free loopback port, the quickstart's state to look at, and small HTTP calls (urllib, no client
library between the test and the server)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from dataferry.config import Config
from dataferry.progress import NullReporter
from dataferry.quickstart import run_quickstart
from dataferry.serve.app import create_app
from servers import free_port


@contextmanager
def serving(cfg: Config) -> Iterator[str]:
    """Serve ``cfg``'s status page until the block ends; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="dataferry-serve-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def quickstart_state(directory: Path) -> Config:
    """The quickstart's chain, run once in ``directory`` (three environments, three jobs)."""
    return run_quickstart(directory, reporter=NullReporter(), echo=lambda _line: None)


@dataclass
class Reply:
    """An HTTP response, read whole (the pages are small)."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def call(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One request; an HTTP error status is returned, not raised. Redirects are not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode())
