"""What a connection URL may carry: no password, and only query parameters on an allow-list.

A URL reaches the tools' command lines (``pg_dump --dbname=...``), which every local user can read
in ``ps``, so a parameter that carries a secret (libpq's ``sslpassword``, ...) must never be in it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

#: URL query parameters that carry a password (libpq and MySQL URLs accept ``?password=``).
_PASSWORD_PARAMS = {"password", "passwd", "pwd", "pass"}
#: URL query parameters passed on to each kind of tool: an allow-list, so that a parameter that
#: carries a secret (libpq's ``password``, ``sslpassword``, ...) never reaches a command line, where
#: ``ps`` shows it to every local user. Anything else in a URL is refused at its line.
URL_PARAMS: dict[str, frozenset[str]] = {
    "postgresql": frozenset(
        [
            "application_name",
            "channel_binding",
            "client_encoding",
            "connect_timeout",
            "dbname",
            "fallback_application_name",
            "gssencmode",
            "gsslib",
            "host",
            "hostaddr",
            "keepalives",
            "keepalives_count",
            "keepalives_idle",
            "keepalives_interval",
            "krbsrvname",
            "load_balance_hosts",
            "options",
            "port",
            "requirepeer",
            "service",
            "ssl_max_protocol_version",
            "ssl_min_protocol_version",
            "sslcert",
            "sslcompression",
            "sslcrl",
            "sslcrldir",
            "sslkey",
            "sslmode",
            "sslrootcert",
            "sslsni",
            "target_session_attrs",
            "tcp_user_timeout",
            "user",
        ]
    ),
    "mysql": frozenset({"socket"}),
    "sqlite": frozenset(),
}
URL_PARAMS["postgres"] = URL_PARAMS["postgresql"]
URL_PARAMS["mariadb"] = URL_PARAMS["mysql"]


def check_url(v: str) -> str:
    """``v`` if it is an acceptable connection URL; ``ValueError`` saying what is wrong otherwise."""
    parts = urlsplit(v)
    query_keys = {k.lower() for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if parts.password or query_keys & _PASSWORD_PARAMS:
        raise ValueError(
            "the URL contains a password; remove it and set password_env to the name of an "
            "environment variable that holds it"
        )
    if not parts.scheme:
        raise ValueError("the URL has no scheme (postgresql://, mysql://, sqlite:///)")
    allowed = URL_PARAMS.get(parts.scheme.lower())
    refused = sorted(query_keys - allowed) if allowed is not None else []
    if allowed is not None and refused:
        raise ValueError(_refused_param(refused[0], parts.scheme, allowed))
    return v


def _refused_param(name: str, scheme: str, allowed: frozenset[str]) -> str:
    """Why a URL parameter is refused: it carries a secret, or dataferry does not pass it on."""
    if any(word in name for word in ("pass", "secret", "key")):
        return (
            f"the URL parameter {name!r} carries a secret, and a URL reaches tools' command lines, "
            "which every local user can read; use a client key without a passphrase, or the tool's "
            "own configuration (e.g. a libpq service file)"
        )
    accepted = ", ".join(sorted(allowed)) or "no parameters"
    return (
        f"the URL parameter {name!r} is not one dataferry passes on; in {scheme} URLs it accepts {accepted}"
    )
