"""The user's standard MySQL option files (``~/.my.cnf`` and the system ones), read as the client
tools read them, for the one thing dataferry takes from them: the password (and the user, where
the caller has none), when no password variable is configured.

dataferry's tools run with ``HOME`` set to a private directory, so they never read these files
themselves: a ``host`` or ``socket`` there would silently redirect a restore to another server.
Only ``password`` and ``user`` are taken, from the groups every client tool reads (``[client]``,
``[client-server]``, ``[client-mariadb]``), and only the password reaches the tools, through
dataferry's own 0600 option file. Files are read in the clients' order, a later value winning:
``/etc/my.cnf``, ``/etc/mysql/my.cnf``, ``$MYSQL_HOME/my.cnf``, ``~/.my.cnf``; ``!include`` and
``!includedir`` are followed. An unreadable file is skipped, as the clients skip it.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator, Mapping
from pathlib import Path

#: The groups every client tool (mysql, mariadb, mysqldump, mariadb-dump) reads.
CLIENT_GROUPS = ("client", "client-server", "client-mariadb")
#: The keys taken from those groups; everything else (host, port, socket ...) is ignored on purpose.
TAKEN = ("user", "password")
_MAX_DEPTH = 10  # !include loops


def home_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The user's home: ``$HOME``, else the password database's entry (as the clients do)."""
    environ = os.environ if environ is None else environ
    home = environ.get("HOME")
    if home:
        return Path(home)
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def standard_files(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The option files the client tools read by default, in the order they read them."""
    environ = os.environ if environ is None else environ
    files = [Path("/etc/my.cnf"), Path("/etc/mysql/my.cnf")]
    for var in ("MARIADB_HOME", "MYSQL_HOME"):
        if environ.get(var):
            files.append(Path(environ[var]) / "my.cnf")
            break
    files.append(home_directory(environ) / ".my.cnf")
    return files


def client_defaults(files: list[Path] | None = None) -> dict[str, str]:
    """``user`` and ``password`` from the client groups of ``files`` (default: the standard ones)."""
    found: dict[str, str] = {}
    for path in standard_files() if files is None else files:
        for key, value in _client_values(path, 0):
            found[key] = value
    return found


def _client_values(path: Path, depth: int) -> Iterator[tuple[str, str]]:
    """The taken keys of the client groups of one file, in file order, includes followed."""
    if depth > _MAX_DEPTH:
        return
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    group = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("!include "):
            yield from _client_values(Path(line.split(None, 1)[1]), depth + 1)
        elif line.startswith("!includedir "):
            folder = Path(line.split(None, 1)[1])
            for item in sorted(folder.glob("*.cnf")) if folder.is_dir() else []:
                yield from _client_values(item, depth + 1)
        elif line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip().lower()
        elif group in CLIENT_GROUPS and "=" in line:
            key, _, value = line.partition("=")
            key = key.strip().replace("_", "-").lower()
            if key in TAKEN:
                yield key, _value(value.strip())


def _value(value: str) -> str:
    """An option value as the clients read it: quotes removed with their escapes, or an unquoted
    value up to a ``#`` comment."""
    if len(value) >= 2 and value[0] in "'\"" and value[0] in value[1:]:
        quote = value[0]
        out: list[str] = []
        chars = iter(value[1:])
        for ch in chars:
            if ch == "\\":
                nxt = next(chars, "")
                out.append({"n": "\n", "t": "\t", "s": " "}.get(nxt, nxt))
            elif ch == quote:
                break
            else:
                out.append(ch)
        return "".join(out)
    return value.split(" #", 1)[0].split("\t#", 1)[0].strip()
