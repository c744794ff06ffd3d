"""Connection details handed to engines: ``DatabaseRef``, with the password read from its
environment variable only now, and never shown in a repr."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from pydantic import SecretStr

from dataferry.config.models import Config, ConnectionConfig, _Model
from dataferry.errors import ConfigError, NotReady


class DatabaseRef(_Model):
    """Everything an engine needs to reach one database in one environment; the password is a secret."""

    name: str
    environment: str
    engine: str
    url: str
    password: SecretStr | None = None
    owner: str | None = None
    exclude_tables: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """The real database, for messages (the configuration's ``name`` is only a label): the
        database name and its host (``publishing_api_production on db1:5432``), or the SQLite file."""
        if self.engine == "sqlite":
            return self.url.split("://", 1)[1][1:] or self.url
        parts = urlsplit(self.url)
        where = parts.hostname or "localhost"
        if parts.port:
            where += f":{parts.port}"
        return f"{parts.path.lstrip('/') or self.name} on {where}"

    def __repr__(self) -> str:
        return f"DatabaseRef({self.name!r}, env={self.environment!r}, url={self.url!r})"

    __str__ = __repr__


def database_ref(cfg: Config, database: str, environment: str) -> DatabaseRef:
    """Connection details for ``database`` in ``environment``, reading the password env var now."""
    db = cfg.database(database)
    cfg.environment(environment)
    conn = db.environments.get(environment)
    if conn is None:
        raise ConfigError(
            f"database {database!r} has no connection for environment {environment!r}",
            hint=f"add [databases.{database}.environments] {environment} = {{ url = ... }}",
        )
    return connection_ref(cfg, database, environment, conn)


def connection_ref(cfg: Config, database: str, environment: str, conn: ConnectionConfig) -> DatabaseRef:
    """Connection details from one connection table (an environment's, or a database's ``scratch``);
    ``environment`` is the label used in messages."""
    db = cfg.database(database)
    password = None
    if conn.password_env:
        value = os.environ.get(conn.password_env)
        if value is None:
            raise NotReady(
                f"environment variable {conn.password_env} is not set "
                f"(password for {database} in {environment})",
                hint=f"export {conn.password_env} before running dataferry",
            )
        password = SecretStr(value)
    url = conn.url
    if db.engine == "sqlite":
        url = _absolute_sqlite_url(cfg, url)
    return DatabaseRef(
        name=database,
        environment=environment,
        engine=db.engine,
        url=url,
        password=password,
        owner=conn.owner,
        exclude_tables=tuple(db.exclude_tables),
    )


def _absolute_sqlite_url(cfg: Config, url: str) -> str:
    """``sqlite:///rel/path`` is relative to the config file; ``sqlite:////abs/path`` is absolute."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    return "sqlite:///" + str(cfg.resolve_path(path))


#: Variables that hold credentials whatever the configuration says (boto3 and the clients read them).
_WELL_KNOWN_SECRETS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD", "MYSQL_PWD")


def secret_values(cfg: Config, extra_vars: tuple[str, ...] = ()) -> list[str]:
    """The values of every secret the configuration names (passwords, store keys) and of
    ``extra_vars``, as set now; for scrubbing text that leaves dataferry (hook output). Longest
    first, so a secret that contains another is replaced whole."""
    names = set(_WELL_KNOWN_SECRETS) | set(extra_vars)
    for db in cfg.databases.values():
        conns = [*db.environments.values(), *([db.scratch] if db.scratch else [])]
        names.update(c.password_env for c in conns if c.password_env)
    for env in cfg.environments.values():
        names.update(n for n in (env.store.access_key_id_env, env.store.secret_access_key_env) if n)
    values = {os.environ[n] for n in names if os.environ.get(n)}
    return sorted(values, key=len, reverse=True)
