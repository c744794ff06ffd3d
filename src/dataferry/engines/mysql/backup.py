"""The backup side: the dump tool's arguments, and the stream that prepends dataferry's header line
and counts rows as the dump passes."""

from __future__ import annotations

from collections.abc import Sequence

from dataferry.engines.mysql.conn import MAX_PACKET, OptionFile, Tool, supports_option
from dataferry.engines.mysql.dumpfile import DumpScanner, StreamRowCounter
from dataferry.errors import EngineError
from dataferry.streams import ByteSource, Reader


class HeaderCountingReader(Reader):
    """The dump stream: dataferry's header line, then the tool's output, with rows counted per table
    on the way through. At EOF it checks the tool wrote its "Dump completed" trailer."""

    def __init__(self, src: ByteSource, header: bytes) -> None:
        self._src = src
        self._pending = header
        self._counter = StreamRowCounter(DumpScanner())
        self.counts = self._counter.counts
        self._finished = False

    def read(self, n: int = -1) -> bytes:
        """Read and count."""
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
    option = "--ignore-table-data" if keeps_structure(tool) else "--ignore-table"
    argv += [f"{option}={database}.{table}" for table in exclude]
    argv.append(database)
    return argv


def keeps_structure(tool: Tool) -> bool:
    return supports_option(tool.path, "--ignore-table-data")
