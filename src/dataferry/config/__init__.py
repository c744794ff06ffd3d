"""The configuration file: pydantic models (``models``), loading with errors at file and line
(``loading``), the cross-references between its tables (``references``) and the connection details handed to engines (``refs``).

The file is TOML. Secrets are never written in it: connections name an environment variable
(``password_env``) and the value is read only when a connection is made. Every problem in a file
is reported at once, each with its location, and loading raises ``ConfigError`` (exit 2).
"""

from __future__ import annotations

from dataferry.config.loading import _describe, find_config_path, load, load_config, parse
from dataferry.config.models import (
    Config,
    ConnectionConfig,
    DatabaseConfig,
    Duration,
    EnvironmentConfig,
    JobConfig,
    S3Options,
    Settings,
    StoreConfig,
    parse_duration,
)
from dataferry.config.policies import EncryptionConfig, RetentionConfig
from dataferry.config.references import NAME_RE
from dataferry.config.refs import DatabaseRef, connection_ref, database_ref, secret_values

__all__ = [
    "NAME_RE",
    "Config",
    "ConnectionConfig",
    "DatabaseConfig",
    "DatabaseRef",
    "Duration",
    "EncryptionConfig",
    "EnvironmentConfig",
    "JobConfig",
    "RetentionConfig",
    "S3Options",
    "Settings",
    "StoreConfig",
    "_describe",
    "connection_ref",
    "database_ref",
    "find_config_path",
    "load",
    "load_config",
    "parse",
    "parse_duration",
    "secret_values",
]
