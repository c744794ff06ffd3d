"""Times given on the command line or in a form: ISO 8601 (naive means UTC), or a duration such as
``3d`` counted from now, ahead of it or back from it. One reading for every time option (``restore
--at``, ``pull --at``, ``pause --until``, the status page's pause form)."""

from __future__ import annotations

from datetime import UTC, datetime

from dataferry.config.models import parse_duration
from dataferry.errors import ConfigError


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time; naive times are UTC."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"cannot read time {value!r}", hint="use ISO 8601, e.g. 2026-11-20T01:30:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def time_or_duration(value: str | None, *, sign: int, now: datetime | None = None) -> datetime | None:
    """A time option given as ISO 8601 or as a duration such as ``3d`` counted from now: ahead of it
    (``sign=1``, ``pause --until 3d``) or back from it (``sign=-1``, ``restore --at 3d``), so every
    time option reads the same forms."""
    if value is None:
        return None
    # Whole seconds: the time is printed back in messages and records, where microseconds are noise.
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    try:
        return now + sign * parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_time(value)
    except ConfigError as exc:
        raise ConfigError(
            exc.message, hint="use ISO 8601 (2026-11-20T01:30:00Z) or a duration such as 3d"
        ) from None
