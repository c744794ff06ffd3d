"""The page's only writes: pause and resume, through ``dataferry.jobs.holds`` (what ``dataferry
pause`` and ``dataferry resume`` do). The caller has checked the token and the CSRF field."""

from __future__ import annotations

from dataclasses import dataclass

from dataferry.config import Config
from dataferry.errors import ConfigError
from dataferry.jobs.common import StoreCache, now_utc
from dataferry.jobs.holds import Hold, HoldScope, lift_hold, parse_until, place_hold

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
        until=parse_until(req.until, now, what="until"),
    )
    place_hold(cfg, hold, StoreCache(cfg))
    return hold


def resume(cfg: Config, req: HoldRequest) -> bool:
    """Lift the hold ``req`` names; True if there was one."""
    scope, target = _scope(req)
    return lift_hold(cfg, scope, target, StoreCache(cfg))
