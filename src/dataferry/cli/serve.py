"""``dataferry serve``: the status page (``dataferry.serve``) under uvicorn. Loaded by
``dataferry.cli`` when the command runs, so Starlette and uvicorn load only here."""

from __future__ import annotations

import click

from dataferry.cli._common import Context, pass_ctx
from dataferry.errors import ConfigError

DEFAULT_BIND = "127.0.0.1:8080"
#: The names a browser uses for a server bound to the loopback interface.
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> host and port; a ``ConfigError`` otherwise."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--bind {value!r} is not HOST:PORT", hint=f"for example --bind {DEFAULT_BIND}")
    return host.strip("[]"), int(port)


@click.command("serve")
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    help="Address to listen on; keep localhost and put a reverse proxy in front (docs/runbook.md).",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    help="A host name the page may be reached by (repeat it), e.g. a reverse proxy's. Bound to "
    "localhost, localhost's names always work; bound elsewhere without it, any name.",
)
@pass_ctx
def serve(c: Context, bind: str, allow_hosts: tuple[str, ...]) -> None:
    """Serve the status page: freshness matrix, jobs, databases, holds, JSON API, /metrics.

    Read-only unless DATAFERRY_SERVE_TOKEN is set; then pause and resume need that token.
    """
    host, port = parse_bind(bind)
    # Bound to localhost, localhost's names always work (a curl on the machine, the runbook's API
    # examples); --allow-host adds a reverse proxy's name. Bound elsewhere: the names given, or any.
    if host in LOOPBACK:
        hosts: list[str] | None = [*allow_hosts, *LOOPBACK]
    else:
        hosts = list(allow_hosts) or None
    try:
        import uvicorn

        from dataferry.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"dataferry serve needs its extra packages ({exc.name} is missing)",
            hint="pip install 'dataferry[serve]'",
        ) from None
    app = create_app(c.config, allowed_hosts=hosts)
    click.echo(f"dataferry serve: http://{bind}/ (Ctrl-C stops)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=True, server_header=False)
