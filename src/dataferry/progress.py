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

    from dataferry.errors import FerryError


class Reporter(Protocol):
    """Receives events from library operations; the CLI picks an implementation."""

    def info(self, message: str, **fields: Any) -> None:
        """A step began or ended."""
        ...

    def warn(self, message: str, **fields: Any) -> None:
        """Something the operator should look at; never used for a failure."""
        ...

    def transfer(self, label: str, total: int | None) -> Transfer:
        """Start a byte-counted transfer (a dump, an upload, a restore); ``total`` may be an
        ``Estimate`` (a dump's size guessed from the database's), which still gives an ETA."""
        ...


class Transfer(Protocol):
    """A running transfer: ``advance`` with bytes as they move, ``done`` at the end."""

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes."""
        ...

    def done(self) -> None:
        """The transfer finished. One that an error stopped ends with ``failed()`` where the
        transfer has it (see ``finish``), so it is not summarised as if it had succeeded."""
        ...


class Estimate(int):
    """A transfer's total that is an estimate (an ``int`` to reporters that do not know it)."""


def finish(transfer: Transfer, ok: bool) -> None:
    """End ``transfer``: ``done()``, or ``failed()`` after an error where it has one."""
    failed = getattr(transfer, "failed", None)
    if not ok and callable(failed):
        failed()
    else:
        transfer.done()


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
        self.closed = False

    def _emit(
        self, level: str, message: str, fields: dict[str, Any], said: frozenset[str] = frozenset()
    ) -> None:
        """One line; the fields typed in JSON (bytes, seconds), in units people read otherwise,
        where those in ``said`` are left out because the message already says them."""
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.as_json:
            line = json.dumps({"time": now, "level": level, "message": message, **fields}, default=str)
        else:
            extra = fields_text({k: v for k, v in fields.items() if k not in said})
            line = f"{now} {level.upper():5} {message}" + (f" ({extra})" if extra else "")
        if self.closed:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            # The reader went away (`| head`, a pager quit): the log was only a view of the work,
            # whose run record says how it ended, so the work goes on and stops logging.
            self.closed = True

    def info(self, message: str, **fields: Any) -> None:
        """Log at info level."""
        self._emit("info", message, fields)

    def warn(self, message: str, **fields: Any) -> None:
        """Log at warning level."""
        self._emit("warn", message, fields)

    def error(self, message: str, **fields: Any) -> None:
        """Log at error level (the CLI's last line when a command fails)."""
        self._emit("error", message, fields)

    def failed(self, exc: FerryError) -> None:
        """A command's last line when it fails: the error with its exit code, notes and hint as
        fields (``--json-logs``: every line is JSON, this one too)."""
        fields: dict[str, Any] = {"exit_code": exc.exit_code, "label": exc.label}
        if notes := getattr(exc, "__notes__", []):
            fields["notes"] = list(notes)
        if exc.hint:
            fields["hint"] = exc.hint
        self.error(exc.message, **fields)

    def emit(self, level: str, message: str, **fields: Any) -> None:
        """Log at ``level`` (``note``, ...)."""
        self._emit(level, message, fields)

    def transfer(self, label: str, total: int | None) -> Transfer:
        """Log the start, a line every 30 s (with an ETA when the total is known), and the end."""
        return _LoggedTransfer(self, label, total)


class _LoggedTransfer:
    def __init__(self, log: LogReporter, label: str, total: int | None) -> None:
        self.log, self.label, self.total = log, label, total
        self.count = 0
        self.start = self.last = time.monotonic()
        key = "estimated_bytes" if isinstance(total, Estimate) else "total_bytes"
        log.info(f"{label}: started", **({key: total} if total else {}))

    def advance(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= 30:
            self.last = now
            fields: dict[str, Any] = {"bytes": self.count, "rate": self._rate(now)}
            if self.total and self.count < self.total and fields["rate"] > 0:
                fields["eta"] = round((self.total - self.count) / fields["rate"])
            self.log._emit(
                "info", f"{self.label}: {human_bytes(self.count)} so far", fields, frozenset({"bytes"})
            )

    def done(self) -> None:
        now = time.monotonic()
        fields = {"bytes": self.count, "duration": round(now - self.start, 3), "rate": self._rate(now)}
        message = f"{self.label}: {human_bytes(self.count)} in {human_duration(now - self.start)}"
        self.log._emit("info", message, fields, frozenset({"bytes", "duration"}))

    def failed(self) -> None:
        now = time.monotonic()
        fields = {"bytes": self.count, "duration": round(now - self.start, 3), "rate": self._rate(now)}
        message = f"{self.label}: stopped after {human_bytes(self.count)}"
        self.log._emit("warn", message, fields, frozenset({"bytes", "duration", "rate"}))

    def _rate(self, now: float) -> float:
        """Bytes per second, a number (a JSON field; text shows it in IEC units)."""
        return round(self.count / max(now - self.start, 1e-6), 1)


class RichReporter(LogReporter):
    """Progress bars with bytes, rate and ETA on a terminal; messages as plain lines above them."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console

        super().__init__(sys.stderr)
        self.console = console or Console(stderr=True, highlight=False)

    def _emit(
        self, level: str, message: str, fields: dict[str, Any], said: frozenset[str] = frozenset()
    ) -> None:
        from rich.markup import escape

        style = "yellow" if level == "warn" else "dim"
        extra = fields_text({k: v for k, v in fields.items() if k not in said})
        # Messages carry TOML tables, keys and URLs: brackets and colons are text, not markup or emoji;
        # no highlighting either, which coloured the digits of run ids and times apart.
        text = escape(f"{message} {extra}".rstrip())
        self.console.print(
            f"[{style}]{datetime.now().strftime('%H:%M:%S')}[/] {text}", emoji=False, highlight=False
        )

    def transfer(self, label: str, total: int | None) -> Transfer:
        """A rich progress bar for this transfer (with an ETA from an estimated total too)."""
        estimated = isinstance(total, Estimate)
        return _RichTransfer(self.console, f"{label} (estimated size)" if estimated else label, total)


class _RichTransfer:
    def __init__(self, console: Console, label: str, total: int | None) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        # Sizes and rates through human_bytes, as everywhere else: rich's own columns say kB and MB.
        self.progress: Progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[done]}"),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.total = total
        self.shown = 0.0
        self.progress.start()
        self.task: TaskID = self.progress.add_task(label, total=total, done="", rate="")
        self._show()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)
        now = time.monotonic()
        if now - self.shown >= 0.1:  # rich redraws 10 times a second: text for each chunk is waste
            self._show()

    def _show(self) -> None:
        self.shown = time.monotonic()
        task = self.progress.tasks[0]
        about = "~" if isinstance(self.total, Estimate) else ""
        of = f"/{about}{human_bytes(self.total)}" if self.total else "/?"
        speed = task.speed
        self.progress.update(
            self.task,
            done=human_bytes(task.completed) + of,
            rate=human_bytes(speed) + "/s" if speed else "",
        )

    def done(self) -> None:
        self._show()
        self.progress.stop()

    def failed(self) -> None:
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


def fields_text(fields: dict[str, Any]) -> str:
    """``k=v`` pairs for a person: sizes in IEC units, rates per second, durations and ETAs in
    seconds, minutes, hours (JSON lines keep the numbers)."""
    return " ".join(f"{k}={_field_text(k, v)}" for k, v in fields.items())


def _field_text(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key == "rate":
        return human_bytes(value) + "/s"
    if key in ("size", "bytes", "raw_size") or key.endswith("_bytes"):
        return human_bytes(value)
    if key in ("duration", "eta"):
        return human_duration(value)
    return str(value)


def human_duration(seconds: float) -> str:
    """The one way dataferry shows a duration: ``0.4s``, ``12s``, ``5m 3s``, ``4h 10m``, ``3d 2h``
    (the two largest units, rounded down; tenths of a second under 10 s)."""
    seconds = max(seconds, 0.0)
    if seconds < 10 and seconds != int(seconds):
        return f"{int(seconds * 10) / 10:.1f}s"
    rest = int(seconds)
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count or parts:
            parts.append(f"{count}{unit}")
    shown = [p for p in parts[:2] if not p.startswith("0")]
    return " ".join(shown) or "0s"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB': the one way dataferry shows a size (IEC units)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
