"""restic's ``forget`` policy on artifact timestamps (UTC), with timestamps chosen by hand and the
expected survivors written out by hand (not computed the way the code computes them)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from dataferry.artifacts import DataObject, Manifest, artifact_id
from dataferry.config import RetentionConfig
from dataferry.ops.prune import keep_by_policy

TIMES = [  # newest first; 2026-03-10 is a Tuesday (ISO week 11), 2026-03-01 a Sunday (week 9)
    "2026-03-10T18:00:00",
    "2026-03-10T06:00:00",
    "2026-03-09T12:00:00",
    "2026-03-07T12:00:00",
    "2026-03-02T12:00:00",
    "2026-03-01T12:00:00",
    "2026-02-15T12:00:00",
    "2026-01-20T12:00:00",
    "2025-12-31T23:30:00",
]


def manifests(times: list[str] = TIMES) -> list[Manifest]:
    out = []
    for text in times:
        when = datetime.fromisoformat(text).replace(tzinfo=UTC)
        ident = artifact_id("app", when)
        obj = DataObject(key=f"app/{ident}.sqlite.zst", size=1, sha256="0" * 64, format="sqlite")
        out.append(
            Manifest(
                id=ident,
                database="app",
                engine="sqlite",
                source_environment="e",
                created_at=when,
                finished_at=when,
                objects=[obj],
            )
        )
    return out


def kept(policy: RetentionConfig) -> dict[str, list[str]]:
    return {k[:13]: v for k, v in keep_by_policy(manifests(), policy).items()}


def test_every_rule_together() -> None:
    policy = RetentionConfig(keep_last=2, keep_daily=3, keep_weekly=2, keep_monthly=3)
    assert kept(policy) == {
        "2026-03-10T18": ["last", "daily", "weekly", "monthly"],
        "2026-03-10T06": ["last"],
        "2026-03-09T12": ["daily"],
        "2026-03-07T12": ["daily", "weekly"],
        "2026-02-15T12": ["monthly"],
        "2026-01-20T12": ["monthly"],
    }


def test_weeks_are_iso_weeks_and_months_calendar_months() -> None:
    assert sorted(kept(RetentionConfig(keep_weekly=4))) == [
        "2026-02-15T12",  # week 7
        "2026-03-01T12",  # week 9 (a Sunday: the week before Monday the 2nd)
        "2026-03-07T12",  # week 10
        "2026-03-10T18",  # week 11
    ]
    assert sorted(kept(RetentionConfig(keep_monthly=12))) == [
        "2025-12-31T23",
        "2026-01-20T12",
        "2026-02-15T12",
        "2026-03-10T18",
    ]


def test_more_buckets_than_artifacts_keeps_one_per_bucket() -> None:
    assert len(kept(RetentionConfig(keep_daily=100))) == 8  # two artifacts share 2026-03-10


def test_a_policy_that_keeps_nothing_is_rejected() -> None:
    with pytest.raises(ValidationError, match="keeps nothing"):
        RetentionConfig()
