"""The page's only writes: pause and resume, through ``dataferry.jobs.holds`` (what ``dataferry
pause`` and ``dataferry resume`` do). The caller has checked the token and the CSRF field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dataferry.config import Config, parse_duration
from dataferry.errors import ConfigError
from dataferry.jobs.common import StoreCache, now_utc
from dataferry.jobs.holds import Hold, HoldScope, lift_hold, place_hold

#: Longest reason or name accepted (shown in every status line of the held jobs).
MAX_TEXT = 500
SCOPES: dict[str, HoldScope] = {"job": "job", "environment": "environment", "all": "all"}


@dataclass(frozen=True)
class HoldRequest:
    """What a pause or resume form (or API call) asks for."""

    scope: str
    target: str = ""
    reason: str = ""
    by: str = ""
    until: str = ""


def _scope(req: HoldRequest) -> tuple[HoldScope, str]:
    scope = SCOPES.get(req.scope)
    if scope is None:
        raise ConfigError(f"unknown hold scope {req.scope!r}: use job, environment or all")
    if scope == "all":
        return scope, "*"
    if not req.target.strip():
        raise ConfigError(f"name the {scope} to pause or resume")
    return scope, req.target.strip()


def parse_until(value: str, now: datetime) -> datetime | None:
    """An expiry: empty (until resumed), a duration such as ``3d``, or an ISO 8601 time."""
    value = value.strip()
    if not value:
        return None
    try:
        until = now + parse_duration(value)
    except ValueError:
        until = _iso_time(value)
    if until <= now:
        raise ConfigError(f"until {value} is in the past", hint="give a future time or a duration like 3d")
    return until


def _iso_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"until {value!r} is neither a duration (3d) nor an ISO 8601 time") from None
    if when.tzinfo is None:
        raise ConfigError(f"until {value!r} has no time zone: add Z or +01:00")
    return when


def pause(cfg: Config, req: HoldRequest) -> Hold:
    """Place the hold ``req`` asks for; ``ConfigError``/``NotFound`` for a bad request."""
    scope, target = _scope(req)
    if not req.reason.strip():
        raise ConfigError("a pause must say why: give a reason")
    if len(req.reason) > MAX_TEXT or len(req.by) > MAX_TEXT:
        raise ConfigError(f"the reason and the name are limited to {MAX_TEXT} characters")
    if not req.by.strip():
        raise ConfigError("a pause must say who: give your name")
    now = now_utc()
    hold = Hold(
        scope=scope,
        target=target,
        reason=req.reason.strip(),
        created_at=now,
        created_by=f"{req.by.strip()} (dataferry serve)",
        until=parse_until(req.until, now),
    )
    place_hold(cfg, hold, StoreCache(cfg))
    return hold


def resume(cfg: Config, req: HoldRequest) -> bool:
    """Lift the hold ``req`` names; True if there was one."""
    scope, target = _scope(req)
    return lift_hold(cfg, scope, target, StoreCache(cfg))
