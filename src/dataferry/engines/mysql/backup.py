"""The backup side: the dump tool's arguments, and the stream that prepends dataferry's header line,
tidies the tool's own first lines and counts rows as the dump passes.

The tool's first lines are rewritten in two ways (nothing else in the dump is touched):

* MariaDB's dump tools (10.5.25, 10.6.18, 10.11.8, 11.x and later) start with the sandbox line
  ``/*M!999999\\- enable the sandbox mode */``. It is a client command (``\\-``) that puts the
  ``mariadb`` client into sandbox mode: no ``\\!`` shell commands, ``source``, ``tee`` or other
  file access for the rest of the input, a defence against a dump whose text was crafted to smuggle
  client commands. MySQL's ``mysql`` client (8.0) and older MariaDB clients do not know it and stop
  at once with "ERROR at line 1: Unknown command '\\-'", so the line is removed. dataferry's own
  restore runs the client with ``--binary-mode``, which ignores client commands in a dump anyway.
* ``-- Host: ... Database: NAME`` names the published database when a copy (``<db>_dfshadow``, the
  scratch database) was dumped in its place.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from dataferry.engines.mysql.conn import MAX_PACKET, OptionFile, Tool
from dataferry.engines.mysql.dumpfile import DumpScanner, StreamRowCounter
from dataferry.errors import EngineError
from dataferry.streams import ByteSource, Reader


class HeaderCountingReader(Reader):
    """The dump stream: dataferry's header line, then the tool's output, with rows counted per table
    on the way through. At EOF it checks the tool wrote its "Dump completed" trailer."""

    def __init__(self, src: ByteSource, header: bytes, rename: tuple[str, str] | None = None) -> None:
        self._src = src
        self._pending = header
        self._rename = rename
        self._counter = StreamRowCounter(DumpScanner())
        self.counts = self._counter.counts
        self._finished = False
        self._started = False

    def read(self, n: int = -1) -> bytes:
        """Read and count."""
        if not self._started:
            self._started = True
            first = self._first_lines()
            self._counter.push(first)
            self._pending += first
        if self._pending:
            cut = len(self._pending) if n is None or n < 0 else n
            out, self._pending = self._pending[:cut], self._pending[cut:]
            return out
        data = self._src.read(n)
        if data:
            self._counter.push(data)
        elif n != 0:
            self._finish()
        return data

    def _first_lines(self) -> bytes:
        """The tool's first lines, tidied (see the module's docstring)."""
        data = b""
        while data.count(b"\n") < PROLOGUE_LINES and len(data) < PROLOGUE_BYTES:
            chunk = self._src.read(PROLOGUE_BYTES)
            if not chunk:
                break
            data += chunk
        return tidy_prologue(data, self._rename)

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._counter.finish()
        if not self._counter.scanner.completed:
            raise EngineError(
                "the dump ended without its 'Dump completed' line: it is incomplete",
                hint="the dump tool stopped early; see its messages above and re-run the backup",
            )


#: How much of the tool's output counts as its first lines (its comment header is 6 lines).
PROLOGUE_LINES = 8
PROLOGUE_BYTES = 65536
#: MariaDB's sandbox line (``/*M!999999\\- ...`` since 10.5.25; ``/*!999999\\- ...`` in a few releases).
SANDBOX_RE = re.compile(rb"/\*M?!999999\\- enable the sandbox mode \*/ ?\r?\n")


def tidy_prologue(data: bytes, rename: tuple[str, str] | None) -> bytes:
    """``data`` (the start of a dump) without the sandbox line on its first lines, and with the
    ``-- Host:`` line naming ``rename[1]`` instead of ``rename[0]``."""
    lines = data.split(b"\n")
    head, rest = lines[:PROLOGUE_LINES], lines[PROLOGUE_LINES:]
    out: list[bytes] = []
    for i, line in enumerate(head):
        last = i == len(lines) - 1  # an unterminated last line is never a whole sandbox line
        if not last and SANDBOX_RE.fullmatch(line + b"\n"):
            continue
        if rename and line.startswith(b"-- Host: "):
            before, mark, name = line.rpartition(b"Database: ")
            if mark and name.rstrip() == rename[0].encode():
                line = before + mark + rename[1].encode() + name[len(name.rstrip()) :]
        out.append(line)
    return b"\n".join(out + rest)


def dump_argv(tool: Tool, opts: OptionFile, database: str, exclude: Sequence[str]) -> list[str]:
    argv = [
        tool.path,
        opts.arg,  # must be first
        "--single-transaction",
        "--quick",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--no-tablespaces",  # MySQL 8 needs PROCESS for tablespaces; a database dump needs none
        "--default-character-set=utf8mb4",
        f"--max-allowed-packet={MAX_PACKET}",
    ]
    if not tool.is_mariadb:
        argv.append("--set-gtid-purged=OFF")  # the shadow is not a replica: no GTID statements
    # Left out entirely, as GOV.UK's mysqldump --ignore-table: a restore keeps the target's own table.
    argv += [f"--ignore-table={database}.{table}" for table in exclude]
    argv.append(database)
    return argv
