"""Progress reporting: plain log lines, JSON lines, rich output that never chokes on a message."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from dataferry.progress import (
    Estimate,
    LogReporter,
    NullReporter,
    RichReporter,
    default_reporter,
    finish,
    human_bytes,
    human_duration,
)

LINE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z) (INFO |WARN ) (.*)$")


def test_plain_lines_are_timestamped_and_carry_fields() -> None:
    """``<UTC time> LEVEL message (k=v ...)``, one line per event, flushed as it happens."""
    out = io.StringIO()
    log = LogReporter(out)
    before = datetime.now(UTC).replace(microsecond=0)
    log.info("backup app (production) -> s3://b/app/x", size=123, sha256="abc")
    log.warn("lock refreshed late")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (LINE.match(line) for line in lines)
    assert first and second, lines
    stamp = datetime.strptime(first[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= stamp <= datetime.now(UTC)
    assert first[2] == "INFO "
    assert first[3] == "backup app (production) -> s3://b/app/x (size=123 B sha256=abc)"
    assert second[2] == "WARN "
    assert second[3] == "lock refreshed late"


def test_json_lines_are_one_object_per_line() -> None:
    """--json-logs: each line parses on its own, with time, level, message and the fields."""
    out = io.StringIO()
    log = LogReporter(out, as_json=True)
    log.info("published 2026-11-26T010203Z-app", size=10, path=Path("/x"))
    log.warn('odd "quotes"\nand a newline')
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "info"
    assert first["message"] == "published 2026-11-26T010203Z-app"
    assert first["size"] == 10
    assert first["path"] == "/x"  # anything not JSON-native is written as text
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", first["time"])
    assert second == {"time": second["time"], "level": "warn", "message": 'odd "quotes"\nand a newline'}


def test_transfer_logs_start_and_end_with_size_and_rate() -> None:
    """A transfer says when it starts and how much moved, at what rate, when it is done."""
    out = io.StringIO()
    t = LogReporter(out).transfer("backup app", 3 * 1024 * 1024)
    for _ in range(3):
        t.advance(1024 * 1024)
    t.done()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("backup app: started (total_bytes=3.0 MiB)")
    assert re.search(r"backup app: 3\.0 MiB in \d+(\.\d)?s \(rate=[\d.]+ (B|KiB|MiB|GiB|TiB)/s\)$", lines[1])


def test_a_failed_transfer_is_not_summarised_as_a_success() -> None:
    """A transfer stopped by an error says 'stopped after', at warning level, not '0 B in 0.0s'."""
    out = io.StringIO()
    finish(LogReporter(out).transfer("backup app", None), ok=False)
    last = out.getvalue().splitlines()[-1]
    assert "WARN" in last and last.endswith("backup app: stopped after 0 B"), last


def test_json_transfer_fields_are_numbers() -> None:
    """bytes, duration (seconds) and rate (bytes per second) are JSON numbers."""
    out = io.StringIO()
    t = LogReporter(out, as_json=True).transfer("restore app", 2048)
    t.advance(2048)
    t.done()
    start, end = (json.loads(line) for line in out.getvalue().splitlines())
    assert start["total_bytes"] == 2048
    assert end["bytes"] == 2048
    assert isinstance(end["duration"], float) and isinstance(end["rate"], float)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "0.2s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (61, "1m 1s"),
        (3600, "1h"),
        (26 * 3600, "1d 2h"),
        (3 * 86400 + 59, "3d"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    """One duration formatter: the two largest units, never '0m' for a second or '0.0h' for a minute."""
    assert human_duration(seconds) == text


def test_rich_output_does_not_highlight_parts_of_run_ids() -> None:
    """rich's highlighter coloured the digits of ids and times apart: it is off."""
    out = io.StringIO()
    rich = RichReporter(Console(file=out, force_terminal=True, color_system="standard", width=200))
    rich.info("job nightly: run 2026-11-26T010203Z-a1b2 started")
    line = out.getvalue().splitlines()[0]
    message = line.split(" ", 1)[1]
    assert "\x1b[" not in message, repr(line)


def test_transfer_without_total() -> None:
    """Dumps have no known size in advance."""
    out = io.StringIO()
    LogReporter(out).transfer("backup app", None).done()
    assert out.getvalue().splitlines()[0].endswith("backup app: started")


@pytest.mark.parametrize(
    "message",
    [
        "restore [databases.app] from s3://bucket/[prefix]/x",
        "closing tag [/] and [bold]markup[/bold]",
        "table users:smile: and :warning: stay text",
    ],
)
def test_rich_output_prints_messages_literally(message: str) -> None:
    """Brackets (TOML tables, keys) and :names: are text, never rich markup, emoji or an error."""
    out = io.StringIO()
    rich = RichReporter(Console(file=out, force_terminal=False, width=200))
    rich.info(message, key="[x]")
    rich.warn(message)
    text = out.getvalue()
    assert text.count(message) == 2, text
    assert "key=[x]" in text


def test_null_reporter_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Library use and tests: silence."""
    r = NullReporter()
    r.info("x", a=1)
    r.warn("y")
    t = r.transfer("z", 10)
    t.advance(5)
    t.done()
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_default_reporter_choice() -> None:
    """quiet wins, then JSON, else plain lines when stderr is not a terminal (as under pytest)."""
    assert isinstance(default_reporter(quiet=True, json_logs=True), NullReporter)
    json_log = default_reporter(json_logs=True)
    assert isinstance(json_log, LogReporter) and json_log.as_json
    plain = default_reporter()
    assert type(plain) is LogReporter and not plain.as_json


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB"), (3 * 1024**5, "3072.0 TiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    """Binary units, one decimal."""
    assert human_bytes(n) == text


def test_rich_progress_shows_iec_units() -> None:
    """The progress bar's sizes are KiB/MiB like every other size (rich's own columns said kB, MB)."""
    out = io.StringIO()
    rich = RichReporter(Console(file=out, force_terminal=True, width=200))
    transfer = rich.transfer("restore app", 3 * 1024 * 1024)
    transfer.advance(1024 * 1024)
    transfer.done()
    text = out.getvalue()
    assert "1.0 MiB/3.0 MiB" in text, repr(text)
    assert not re.search(r"\d (kB|MB|GB)\b", text), repr(text)
    estimated = rich.transfer("backup app", Estimate(2 * 1024 * 1024))
    estimated.advance(1024 * 1024)
    estimated.done()
    assert "backup app (estimated size)" in out.getvalue() and "1.0 MiB/~2.0 MiB" in out.getvalue()


def test_an_estimated_total_is_logged_as_one() -> None:
    """A dump's size estimated from the database's is ``estimated_bytes``, not ``total_bytes``."""
    out = io.StringIO()
    LogReporter(out, as_json=True).transfer("backup app", Estimate(4096)).done()
    start = json.loads(out.getvalue().splitlines()[0])
    assert start["estimated_bytes"] == 4096 and "total_bytes" not in start


def test_a_transfer_without_failed_still_ends() -> None:
    """Reporters written before ``failed`` existed (Python callers) get ``done()`` after an error."""
    ended: list[str] = []

    class Old:
        def advance(self, n: int) -> None:
            pass

        def done(self) -> None:
            ended.append("done")

    finish(Old(), ok=False)
    assert ended == ["done"]


def test_a_failure_is_one_json_line_with_its_notes_and_hint() -> None:
    """The CLI's last line under --json-logs: message, exit code, notes and hint as fields."""
    from dataferry.errors import EngineError

    exc = EngineError("pg_restore failed", hint="look at the server log")
    exc.add_note("the shadow app_shadow could not be dropped")
    out = io.StringIO()
    LogReporter(out, as_json=True).failed(exc)
    [line] = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["message"] == "pg_restore failed"
    assert event["exit_code"] == 1 and event["hint"] == "look at the server log"
    assert event["notes"] == ["the shadow app_shadow could not be dropped"]
