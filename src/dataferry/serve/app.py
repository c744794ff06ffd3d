"""The Starlette application of ``dataferry serve``: HTML pages, their JSON API, ``/metrics`` and
``/healthz``, all read from the stores on each request through the library (``collect_status``,
run records, ``ops.list_artifacts``); the only writes are pause and resume (``writes``).

Every value from the stores (job names, hold reasons, error messages are user input) reaches the
HTML through Jinja2 with autoescaping on, and the Content-Security-Policy forbids scripts
altogether: the pages use none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import jinja2
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dataferry._version import __version__
from dataferry.config import Config
from dataferry.errors import ConfigError, FerryError, NotFound
from dataferry.jobs.status import collect_status
from dataferry.jobs.status_text import age
from dataferry.progress import human_bytes
from dataferry.serve import security, writes
from dataferry.serve.exposition import status_samples
from dataferry.serve.matrix import all_holds, build_matrix
from dataferry.serve.pages import database_page, job_page

#: The cookie that carries the outcome of a pause or resume to the page it redirects to.
DONE_COOKIE = "dataferry_done"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _seconds(value: float | None) -> str:
    """``3.2d``, ``4.0h``, ``12m``, ``40s``; ``-`` for unknown."""
    if value is None:
        return "-"
    now = datetime.now(UTC)
    return age(datetime.fromtimestamp(now.timestamp() - value, UTC), now)


def _ago(value: datetime | None) -> str:
    """How long ago, as ``status`` prints it."""
    return age(value, datetime.now(UTC))


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def templates() -> jinja2.Environment:
    """The page templates (package data), escaping every value."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dataferry.serve", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(age=_seconds, ago=_ago, when=_when, bytes=human_bytes)
    env.globals.update(version=__version__)
    return env


class Site:
    """The routes over one configuration."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.env = templates()

    # -- plumbing -----------------------------------------------------------------------------------

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        """Render a page; it carries the CSRF cookie its forms need."""
        csrf = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf()
        html = self.env.get_template(name).render(
            csrf=csrf, writable=security.server_token() is not None, **context
        )
        resp = HTMLResponse(html, status_code=status_code, headers=HEADERS)
        resp.set_cookie(security.CSRF_COOKIE, csrf, httponly=True, samesite="strict", path="/")
        return resp

    def error(self, request: Request, status_code: int, message: str, hint: str | None = None) -> Response:
        """An error, as JSON under ``/api/``, else as a page."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message, "hint": hint}, status_code=status_code, headers=HEADERS)
        return self.page(request, "error.html", status_code, message=message, hint=hint)

    def guarded(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """A read handler whose library errors become a 404 (unknown name) or 503 (unreadable store)."""

        def run(request: Request) -> Response:
            try:
                return handler(request)
            except BadRequest as exc:
                return self.error(request, 400, str(exc))
            except (NotFound, ConfigError) as exc:
                return self.error(request, 404, exc.message, exc.hint)
            except FerryError as exc:
                return self.error(request, 503, exc.message, exc.hint)

        return run

    # -- pages -------------------------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        """The freshness matrix."""
        matrix = build_matrix(self.cfg, collect_status(self.cfg))
        return self.page(request, "matrix.html", matrix=matrix)

    def job(self, request: Request) -> Response:
        """A job's runs, steps, errors and charts."""
        return self.page(request, "job.html", page=job_page(self.cfg, request.path_params["job"]))

    def database(self, request: Request) -> Response:
        """A database's artifacts per environment and its chain."""
        return self.page(request, "database.html", page=database_page(self.cfg, request.path_params["db"]))

    def holds(self, request: Request) -> Response:
        """Who paused what, why, until when; the pause and resume forms."""
        status = collect_status(self.cfg)
        # What the last pause or resume did comes in a cookie, not the address, so that no link
        # from elsewhere can put a message of its own on this page.
        done = request.cookies.get(DONE_COOKIE, "")
        resp = self.page(request, "holds.html", holds=all_holds(status), cfg=self.cfg, done=done)
        if done:
            resp.delete_cookie(DONE_COOKIE, path="/holds")
        return resp

    async def form_write(self, request: Request) -> Response:
        """A pause or resume form: CSRF first, then the token, then the library."""
        try:
            body = await _small_body(request)
        except BadRequest as exc:
            return self.error(request, 413, str(exc))
        fields = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
        try:
            security.check_csrf(request.cookies.get(security.CSRF_COOKIE), fields.get(security.CSRF_FIELD))
            security.check_token(fields.get("token"))
        except security.Denied as exc:
            return self.error(request, exc.status, exc.message)
        try:
            done = self._write(request.path_params["action"], fields)
        except FerryError as exc:
            return self.error(request, 400, exc.message, exc.hint)
        resp = RedirectResponse("/holds", status_code=303, headers=HEADERS)
        resp.set_cookie(DONE_COOKIE, done, max_age=60, httponly=True, samesite="strict", path="/holds")
        return resp

    # -- API -----------------------------------------------------------------------------------------

    def api_status(self, request: Request) -> Response:
        """``status --json``."""
        env = request.query_params.get("env") or None
        return JSONResponse(collect_status(self.cfg, env).to_json(), headers=HEADERS)

    def api_matrix(self, request: Request) -> Response:
        """The matrix's cells, with their states."""
        return JSONResponse(build_matrix(self.cfg, collect_status(self.cfg)).to_json(), headers=HEADERS)

    def api_job(self, request: Request) -> Response:
        """A job's status and ``history --json``."""
        limit = _limit(request)
        return JSONResponse(job_page(self.cfg, request.path_params["job"], limit).to_json(), headers=HEADERS)

    def api_database(self, request: Request) -> Response:
        """A database's ``list --json`` per environment, and its chain."""
        limit = _limit(request)
        page = database_page(self.cfg, request.path_params["db"], limit)
        return JSONResponse(page.to_json(), headers=HEADERS)

    def api_holds(self, request: Request) -> Response:
        """Every active hold."""
        holds = all_holds(collect_status(self.cfg))
        return JSONResponse([h.model_dump(mode="json") for h in holds], headers=HEADERS)

    async def api_write(self, request: Request) -> Response:
        """``POST /api/pause`` or ``/api/resume`` with a bearer token and a JSON body."""
        try:
            security.check_token(security.bearer(request.headers.get("authorization")))
        except security.Denied as exc:
            return self.error(request, exc.status, exc.message)
        try:
            body = json.loads(await _small_body(request) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except BadRequest as exc:
            return self.error(request, 413, str(exc))
        except ValueError:
            return self.error(request, 400, "the body must be a JSON object")
        try:
            done = self._write(request.path_params["action"], {k: str(v) for k, v in body.items()})
        except FerryError as exc:
            return self.error(request, 400, exc.message, exc.hint)
        return JSONResponse({"done": done}, headers=HEADERS)

    def _write(self, action: str, fields: dict[str, str]) -> str:
        if action not in ("pause", "resume"):
            raise NotFound(f"no such action {action!r}: POST to pause or resume")
        req = writes.HoldRequest(
            scope=fields.get("scope", ""),
            target=fields.get("target", ""),
            reason=fields.get("reason", ""),
            by=fields.get("by", ""),
            until=fields.get("until", ""),
        )
        if action == "pause":
            return writes.pause(self.cfg, req).describe()
        removed = writes.resume(self.cfg, req)
        what = "everything" if req.scope == "all" else f"{req.scope} {req.target}"
        return f"resumed {what}" if removed else f"{what} was not held"

    def metrics(self, request: Request) -> Response:
        """Freshness, job states and holds in Prometheus's text format."""
        body = generate_latest(status_samples(self.cfg, collect_status(self.cfg)))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def healthz(self, request: Request) -> Response:
        """Alive (does not read the stores: a slow bucket must not get the pod restarted)."""
        return PlainTextResponse("ok\n")


class BadRequest(ValueError):
    """A request the server cannot take (400 or 413): the message says why."""


#: The largest pause or resume request read (a form is a few hundred bytes).
MAX_BODY = 16 * 1024


async def _small_body(request: Request) -> bytes:
    """The request's body, refused once it grows past ``MAX_BODY``."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"the request is larger than {MAX_BODY} bytes")
    return body


def _limit(request: Request) -> int:
    try:
        return max(1, min(int(request.query_params.get("limit", "30")), 1000))
    except ValueError:
        raise BadRequest("limit must be a whole number, e.g. ?limit=50") from None


def create_app(cfg: Config, allowed_hosts: list[str] | None = None) -> Starlette:
    """The ASGI application of ``dataferry serve`` over ``cfg``. With ``allowed_hosts``, a request
    whose ``Host`` is not one of them gets 400: a page on localhost cannot then be read by another
    site through DNS rebinding (its name resolving to 127.0.0.1)."""
    site = Site(cfg)
    g = site.guarded
    routes = [
        Route("/", g(site.index)),
        Route("/jobs/{job}", g(site.job)),
        Route("/databases/{db}", g(site.database)),
        Route("/holds", g(site.holds)),
        Route("/holds/{action:str}", site.form_write, methods=["POST"]),
        Route("/api/status", g(site.api_status)),
        Route("/api/matrix", g(site.api_matrix)),
        Route("/api/jobs/{job}", g(site.api_job)),
        Route("/api/databases/{db}", g(site.api_database)),
        Route("/api/holds", g(site.api_holds)),
        Route("/api/{action:str}", site.api_write, methods=["POST"]),
        Route("/metrics", g(site.metrics)),
        Route("/healthz", site.healthz),
        Mount("/static", StaticFiles(packages=[("dataferry.serve", "static")]), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)
