"""What an operation tells its operator while it runs: progress bars on a terminal, plain
timestamped log lines otherwise (cron mail, CI, Kubernetes logs), optionally JSON lines.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    # rich is imported only when a terminal shows it: importing it costs every command 20-30 ms
    # of start-up, which cron jobs, CI and --quiet runs never use.
    from rich.console import Console
    from rich.progress import Progress, TaskID


class Reporter(Protocol):
    """Receives events from library operations; the CLI picks an implementation."""

    def info(self, message: str, **fields: Any) -> None:
        """A step began or ended."""
        ...

    def warn(self, message: str, **fields: Any) -> None:
        """Something the operator should look at; never used for a failure."""
        ...

    def transfer(self, label: str, total: int | None) -> Transfer:
        """Start a byte-counted transfer (a dump, an upload, a restore)."""
        ...


class Transfer(Protocol):
    """A running transfer: ``advance`` with bytes as they move, ``done`` at the end."""

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes."""
        ...

    def done(self) -> None:
        """The transfer finished (successfully or not)."""
        ...


class NullReporter:
    """Says nothing (library use, tests)."""

    def info(self, message: str, **fields: Any) -> None:
        """Ignore."""

    def warn(self, message: str, **fields: Any) -> None:
        """Ignore."""

    def transfer(self, label: str, total: int | None) -> Transfer:
        """A transfer that counts nothing."""
        return _NullTransfer()


class _NullTransfer:
    def advance(self, n: int) -> None:
        pass

    def done(self) -> None:
        pass


class LogReporter:
    """Timestamped lines on stderr: ``2026-11-26T01:02:03Z backup publishing-api: ...``."""

    def __init__(self, stream: TextIO | None = None, *, as_json: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.as_json = as_json

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.as_json:
            line = json.dumps({"time": now, "level": level, "message": message, **fields}, default=str)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{now} {level.upper():5} {message}" + (f" ({extra})" if extra else "")
        print(line, file=self.stream, flush=True)

    def info(self, message: str, **fields: Any) -> None:
        """Log at info level."""
        self._emit("info", message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        """Log at warning level."""
        self._emit("warn", message, fields)

    def transfer(self, label: str, total: int | None) -> Transfer:
        """Log the start, a line every 30 s, and the end with the rate."""
        return _LoggedTransfer(self, label, total)


class _LoggedTransfer:
    def __init__(self, log: LogReporter, label: str, total: int | None) -> None:
        self.log, self.label, self.total = log, label, total
        self.count = 0
        self.start = self.last = time.monotonic()
        log.info(f"{label}: started", total_bytes=total) if total else log.info(f"{label}: started")

    def advance(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= 30:
            self.last = now
            self.log.info(f"{self.label}: {human_bytes(self.count)} so far", rate=self._rate(now))

    def done(self) -> None:
        now = time.monotonic()
        self.log.info(
            f"{self.label}: {human_bytes(self.count)} in {now - self.start:.1f}s", rate=self._rate(now)
        )

    def _rate(self, now: float) -> str:
        return human_bytes(int(self.count / max(now - self.start, 1e-6))) + "/s"


class RichReporter(LogReporter):
    """Progress bars with bytes, rate and ETA on a terminal; messages as plain lines above them."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        super().__init__(sys.stderr)
        self.console = console or Console(stderr=True)

    def _emit(self, level: str, message: str, fields: dict[str, Any]) -> None:
        from rich.markup import escape

        style = "yellow" if level == "warn" else "dim"
        extra = " ".join(f"{k}={v}" for k, v in fields.items())
        # Messages carry TOML tables, keys and URLs: brackets and colons are text, not markup or emoji.
        text = escape(f"{message} {extra}".rstrip())
        self.console.print(f"[{style}]{datetime.now().strftime('%H:%M:%S')}[/] {text}", emoji=False)

    def transfer(self, label: str, total: int | None) -> Transfer:
        """A rich progress bar for this transfer."""
        return _RichTransfer(self.console, label, total)


class _RichTransfer:
    def __init__(self, console: Console, label: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.progress.start()
        self.task: TaskID = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def done(self) -> None:
        self.progress.stop()


def default_reporter(*, json_logs: bool = False, quiet: bool = False) -> Reporter:
    """Rich on a terminal, plain (or JSON) lines otherwise."""
    if quiet:
        return NullReporter()
    if json_logs:
        return LogReporter(as_json=True)
    if sys.stderr.isatty():
        return RichReporter()
    return LogReporter()


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
