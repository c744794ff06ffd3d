"""``prune``: remove the artifacts an environment's retention policy does not keep, safely.

The policy is restic's ``forget`` (``[environments.NAME] retention``) on artifact timestamps in UTC:
``keep_last`` the newest N; ``keep_daily``/``keep_weekly``/``keep_monthly`` the newest artifact of
each of the last N days / ISO weeks / months that have one. An artifact any rule keeps is kept.

Whatever the policy says, prune never removes:

- the newest artifact, nor the one a restore would choose now (``layout.select``: for GOV.UK's
  layout the pointer's dump, so the pointer never names a deleted object), nor, where the
  environment requires sanitised data, the newest sanitised one;
- an artifact a running restore reads (a lease, ``ops.leases``);
- an artifact an ``after`` trigger still needs (``pinned``: the job layer passes them,
  ``jobs.pins.after_pins``);
- anything in a protected environment without ``force`` (a dry run, which removes nothing, needs none).

Each artifact loses its manifest first and its data objects after (so nothing half-deleted is ever
"latest"). Orphans (data without a manifest, left by interrupted backups) older than
``orphan_age`` are removed too, where the layout can tell them apart (not GOV.UK's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dataferry.artifacts import Manifest
from dataferry.config import Config, RetentionConfig
from dataferry.errors import ConfigError, Refused
from dataferry.layouts import Layout, layout_for
from dataferry.ops import leases
from dataferry.ops.rules import engine_for
from dataferry.progress import NullReporter, Reporter


@dataclass
class PruneReport:
    """What ``prune`` kept (with why), removed, and would remove (``dry_run``)."""

    database: str
    environment: str
    dry_run: bool
    kept: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    left_for_later: list[str] = field(default_factory=list)  # data a restore took a lease on meanwhile
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        """The report as plain JSON values (``--json``)."""
        return {
            "database": self.database,
            "environment": self.environment,
            "dry_run": self.dry_run,
            "kept": [{"id": k, "reasons": v} for k, v in self.kept.items()],
            "removed": self.removed,
            "orphans": self.orphans,
            "left_for_later": self.left_for_later,
            "notes": self.notes,
        }


_BUCKETS: list[tuple[str, str, Callable[[datetime], object]]] = [
    ("keep_daily", "daily", lambda t: t.date()),
    ("keep_weekly", "weekly", lambda t: t.isocalendar()[:2]),
    ("keep_monthly", "monthly", lambda t: (t.year, t.month)),
]


def keep_by_policy(manifests: list[Manifest], policy: RetentionConfig) -> dict[str, list[str]]:
    """``{artifact id: [reasons]}`` of what ``policy`` keeps (``manifests`` newest first).

    As restic: for each bucket rule, walk newest to oldest and keep the first artifact of each new
    bucket (day, ISO week, month, in UTC) until N buckets are kept.
    """
    keep: dict[str, list[str]] = {}
    for manifest in manifests[: policy.keep_last]:
        keep.setdefault(manifest.id, []).append("last")
    for attr, reason, bucket_of in _BUCKETS:
        limit = getattr(policy, attr)
        seen: list[object] = []
        for manifest in manifests:
            if len(seen) >= limit:
                break
            bucket = bucket_of(manifest.created_at.astimezone(UTC))
            if bucket not in seen:
                seen.append(bucket)
                keep.setdefault(manifest.id, []).append(reason)
    return keep


def prune(
    cfg: Config,
    database: str,
    environment: str,
    *,
    dry_run: bool = False,
    force: bool = False,
    pinned: Iterable[str] = (),
    orphan_age: timedelta = timedelta(hours=24),
    reporter: Reporter | None = None,
) -> PruneReport:
    """Apply ``environment``'s retention policy to ``database``'s artifacts (see the module doc)."""
    reporter = reporter or NullReporter()
    env = cfg.environment(environment)
    if env.retention is None:
        raise ConfigError(
            f"{environment} has no retention policy",
            hint=f"set retention = {{ keep_last = N, keep_daily = N, ... }} in [environments.{environment}]",
        )
    # A dry run removes nothing, so looking first at a protected environment needs no --force.
    if env.protected and not force and not dry_run:
        raise Refused(
            f"{environment} is protected: dataferry does not prune it",
            hint="if you really mean to delete its artifacts, repeat with --force",
        )
    engine = engine_for(cfg, database)
    layout = layout_for(cfg, environment, database)
    manifests = sorted(layout.list_manifests(engine), key=lambda m: m.created_at, reverse=True)
    report = PruneReport(database, environment, dry_run)
    if env.protected and not force:
        report.notes.append(f"{environment} is protected: the prune itself needs --force")
    report.kept = keep_by_policy(manifests, env.retention)
    for ident, reason in _exceptions(cfg, environment, layout, manifests, set(pinned), reporter):
        report.kept.setdefault(ident, []).append(reason)
    for manifest in manifests:
        if manifest.id in report.kept:
            continue
        if leases.leased(layout.store, layout.database, manifest.id):
            report.kept[manifest.id] = ["in use by a restore"]
            continue
        report.removed.append(manifest.id)
        if not dry_run:
            _remove(layout, manifest, report)
    _orphans(layout, report, orphan_age)
    reporter.info(
        f"prune {database} ({environment}): kept {len(report.kept)}, "
        f"{'would remove' if dry_run else 'removed'} {len(report.removed)} artifact(s) "
        f"and {len(report.orphans)} orphan(s)"
    )
    return report


def _exceptions(
    cfg: Config,
    environment: str,
    layout: Layout,
    manifests: list[Manifest],
    pinned: set[str],
    reporter: Reporter,
) -> list[tuple[str, str]]:
    """The artifacts kept whatever the policy says, with why."""
    if not manifests:
        return []
    out = [(manifests[0].id, "newest")]
    chosen = layout.select(engine_for(cfg, layout.database), artifact=None, at=None, reporter=NullReporter())
    out.append((chosen.id, "latest (what a restore takes now)"))
    if cfg.environment(environment).requires_sanitised:
        sanitised = next((m for m in manifests if m.is_publishable_sanitised()), None)
        if sanitised is not None:
            out.append((sanitised.id, "newest sanitised"))
    pinned_keys = getattr(layout, "pinned_data_keys", None)  # optional: GOV.UK's pointer
    if pinned_keys is not None:
        keys = pinned_keys()
        out += [(m.id, "the pointer names it") for m in manifests if m.objects[0].key in keys]
    known = {m.id for m in manifests}
    out += [(ident, "needed by an 'after' trigger") for ident in sorted(pinned) if ident in known]
    return out


def _remove(layout: Layout, manifest: Manifest, report: PruneReport) -> None:
    """Manifest first, then (unless a restore took a lease meanwhile) the data objects."""
    store = layout.store
    if not manifest.extra.get("legacy"):  # a GOV.UK dump without a manifest is its own commit
        store.delete(manifest.key)
    if leases.leased(store, layout.database, manifest.id):
        report.left_for_later += [o.key for o in manifest.objects]
        return
    for obj in manifest.objects:
        store.delete(obj.key)


def _orphans(layout: Layout, report: PruneReport, orphan_age: timedelta) -> None:
    """Data objects no manifest commits, old enough not to be a backup running now."""
    found = layout.orphans()
    if found is None:
        report.notes.append(
            f"the {layout.name} layout cannot tell orphans from other tools' dumps; none removed"
        )
        return
    cutoff = datetime.now(UTC) - orphan_age
    for obj in found:
        if obj.modified is None or obj.modified >= cutoff:
            continue  # possibly a backup uploading right now: its manifest is not written yet
        ident = obj.key.rsplit("/", 1)[-1].split(".", 1)[0]
        if leases.leased(layout.store, layout.database, ident):
            continue  # pruned while a restore read it: the restore still does
        report.orphans.append(obj.key)
        if not report.dry_run:
            layout.store.delete(obj.key)
