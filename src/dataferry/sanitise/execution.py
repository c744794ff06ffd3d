"""Run a profile against one database (a restore's shadow, a scratch copy, or a live database for
read-only checks and dry runs) through the engine's ``RunsSql`` capability.

``sanitise`` is the gate: coverage, scripts and rules (with user triggers paused, ``triggers.py``),
derived objects rebuilt (``objects.py``), then checks; any failure raises
``SanitisationFailed`` (exit 8) with a message that names the script, rule, check or column but never
carries a value from the data or the salt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataferry.artifacts import Sanitisation
from dataferry.config import DatabaseRef
from dataferry.engines import Engine, RunsSql, Shadow
from dataferry.engines.statements import Changed
from dataferry.errors import ChecksFailed as ChecksFailed  # defined in errors.py; importable here too
from dataferry.errors import EngineError, NotReady, SanitisationFailed
from dataferry.progress import Reporter
from dataferry.sanitise import checks, objects, rules, scanning, script_rows, times, triggers
from dataferry.sanitise.dialects import Dialect, dialect_for
from dataferry.sanitise.profile import Profile
from dataferry.sanitise.schema import Schema, coverage, from_rows, require_coverage
from dataferry.sanitise.scrub import scrub


@dataclass
class Target:
    """A database reached through an engine: the live one, or ``shadow`` when given."""

    engine: RunsSql
    ref: DatabaseRef
    shadow: Shadow | None
    dialect: Dialect
    secrets: tuple[str, ...] = ()
    known: set[str] = field(default_factory=set)  # names kept in scrubbed messages
    jobs: int = 1  # connections the scan may use at once (``scanning.py``)

    @property
    def where(self) -> str:
        """Where this runs, for messages."""
        return f"shadow {self.shadow.name}" if self.shadow else f"{self.ref.name} in {self.ref.environment}"

    def run(self, sql: str, what: str) -> list[Changed]:
        """Run a script; a database error becomes ``SanitisationFailed`` naming ``what``. Returns
        what its data-changing statements changed."""
        try:
            return self.engine.run_sql(self.shadow or self.ref, sql) or []
        except EngineError as exc:
            raise self._failed(what, exc) from None

    def query(self, sql: str, what: str) -> list[tuple[object, ...]]:
        """Run a query; a database error becomes ``SanitisationFailed`` naming ``what``."""
        try:
            return self.engine.query(self.shadow or self.ref, sql)
        except EngineError as exc:
            raise self._failed(what, exc) from None

    def _failed(self, what: str, exc: EngineError) -> SanitisationFailed:
        detail = scrub(exc.message, self.known, self.secrets)  # the message has the stderr tail
        return SanitisationFailed(
            f"sanitisation step {what!r} failed on {self.where}: {detail}",
            hint="nothing was published or swapped in; fix the profile or the script and run again",
        )


def target(
    engine: Engine, ref: DatabaseRef, shadow: Shadow | None, secrets: tuple[str, ...] = (), jobs: int = 1
) -> Target:
    """A ``Target``, or ``NotReady`` when the engine cannot run SQL. ``jobs``: connections its scan
    may use at once (a restore's workers; one on a live database, and on SQLite)."""
    if not isinstance(engine, RunsSql):
        raise NotReady(
            f"the {engine.name} engine cannot run sanitisation SQL",
            hint="sanitisation profiles work with the postgresql, mysql and sqlite engines",
        )
    dialect = dialect_for(engine.name)
    return Target(engine, ref, shadow, dialect, secrets, jobs=max(1, jobs) if dialect.parallel_scan else 1)


def read_schema(t: Target) -> Schema:
    """The target's tables and columns."""
    schema = from_rows(t.query(t.dialect.columns_query(), "read schema"), t.dialect.is_text)
    schema.kinds = objects.read(t)
    schema.derived = {name for name, kind in schema.kinds.items() if kind in t.dialect.derived_kinds}
    t.known |= schema.identifiers()
    return schema


def sanitise(t: Target, profile: Profile, salt: str | None, reporter: Reporter) -> Sanitisation:
    """Coverage, scripts, rules and checks on ``t``; returns the passed result or raises."""
    t.known |= _profile_names(profile)
    require_coverage(profile, read_schema(t))
    times.require_times(t, profile)  # before anything is deleted
    applied: list[str] = []
    statements: list[dict[str, Any]] = []
    with triggers.paused(t, reporter):
        for step in rules.plan(profile, t.dialect):
            reporter.info(f"sanitise: {step.description}")
            prelude = t.dialect.salt_prelude(_need(salt, profile)) if step.keyed else ""
            changed = t.run(prelude + step.sql, step.description)
            if step.kind == "script":
                statements += script_rows.record(step.description, changed, profile, reporter)
            applied += step.items or [step.description]
    applied += objects.finish(t, read_schema(t).kinds, profile.large_objects, reporter)
    # the checks run after the last statement that touches data (triggers are back, changing nothing)
    return script_rows.attach(gate(t, profile, applied, reporter, removed=True), statements)


def gate(
    t: Target, profile: Profile, applied: list[str], reporter: Reporter, *, removed: bool = False
) -> Sanitisation:
    """Run every check; the result is returned when all passed, else raised as ``ChecksFailed``.
    ``removed``: also check that every truncated table is still empty (right after the rules; not
    on a live database, whose application may rightly have written rows since)."""
    results = run_checks(t, profile, reporter, removed=removed)
    report = Sanitisation(
        profile=profile.name,
        profile_sha256=profile.sha256,
        rules=applied,
        checks=results,
        passed=all(r["passed"] for r in results),
    )
    if not report.passed:
        lines = checks.failures(results)
        raise ChecksFailed(
            f"sanitisation checks failed on {t.where}: " + "; ".join(lines),
            report=report,
            hint="nothing was published or swapped in; extend the profile's rules (or its scan "
            "allow-list) and run again; 'dataferry sanitise DB --env ENV --dry-run' shows counts",
        )
    return report


def run_checks(
    t: Target, profile: Profile, reporter: Reporter, *, removed: bool = False
) -> list[dict[str, Any]]:
    """Coverage of the final schema (and every object of a kind the dialect can check), truncated
    tables still empty (with ``removed``), SQL checks, the scan of columns and of schema text;
    results, nothing raised for findings."""
    schema = read_schema(t)
    objects.require_known(t, schema.kinds)
    results: list[dict[str, Any]] = [_coverage_result(profile, schema)]
    for name, sql in rules.removed_rows_checks(profile, t.dialect) if removed else []:
        count = int(str(t.query(sql, f"check {name}")[0][0] or 0))
        results.append({"check": "rows", "name": name, "passed": count == 0, "rows": count})
    for check in profile.checks:
        rows = t.query(checks.check_query(check.sql), f"check {check.name}")
        count = int(str(rows[0][0])) if rows else 0
        results.append({"check": "sql", "name": check.name, "passed": count == 0, "rows": count})
    counts = scanning.scan(t, checks.scan_queries(profile, schema, t.dialect), schema.kinds, reporter)
    if profile.scan.enabled:  # view and routine definitions, triggers, defaults, comments
        counts |= checks.scan_definitions(profile, t.query(t.dialect.definitions_query(), "scan definitions"))
    results += checks.scan_results(profile, counts)
    for r in results:
        reporter.info(f"check {r['check']} {r.get('name', '')}: {'passed' if r['passed'] else 'FAILED'}")
    return results


def _coverage_result(profile: Profile, schema: Schema) -> dict[str, Any]:
    """Strict coverage of the schema about to be published (scripts may have added tables)."""
    found = coverage(profile, schema)
    return {
        "check": "coverage",
        "name": "strict" if profile.strict else "rule targets",
        "passed": not found.unclassified,
        "detail": f"unclassified: {', '.join(found.unclassified[:20])}" if found.unclassified else "",
        "tables": len(schema.tables),
    }


def _need(salt: str | None, profile: Profile) -> str:
    if salt is None:  # load_salt() runs before anything starts; this is a programming error guard
        raise NotReady(f"no salt for sanitisation profile {profile.name}")
    return salt


def profile_names(profile: Profile) -> set[str]:
    """Every table, column and check name of the profile (kept in scrubbed messages)."""
    return _profile_names(profile)


def _profile_names(profile: Profile) -> set[str]:
    names = set(profile.tables) | {r.table for r in profile.rows} | {c.name for c in profile.checks}
    for table_rules in profile.tables.values():
        names |= table_rules.classified()
    return names


# -- dry run -------------------------------------------------------------------------------------


@dataclass
class PlannedStep:
    """A step and the rows it would touch now (``None``: cannot tell, e.g. a script)."""

    kind: str
    description: str
    counts: list[tuple[str, int]]


@dataclass
class DryRun:
    """What ``sanitise`` would do on a database, without changing it."""

    profile: str
    profile_sha256: str
    coverage_unclassified: list[str]
    coverage_vanished: list[str]
    steps: list[PlannedStep]
    checks: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """True when the profile fits the schema (checks are expected to fail before sanitising)."""
        return not self.coverage_unclassified and not self.coverage_vanished


def dry_run(t: Target, profile: Profile, reporter: Reporter) -> DryRun:
    """Count what each rule would touch and what each check finds now; read-only queries only."""
    t.known |= _profile_names(profile)
    schema = read_schema(t)
    found = coverage(profile, schema)
    steps = []
    for step in rules.plan(profile, t.dialect):
        counts: list[tuple[str, int]] = []
        if step.count_sql and not _touches_missing(step, found.vanished):
            row = t.query(step.count_sql, f"count {step.description}")[0]
            labels = step.items or (step.description,)
            counts = [(label, int(str(v or 0))) for label, v in zip(labels, row, strict=True)]
        elif step.kind == "script":
            counts = script_rows.planned(t, step.sql, step.description)
        steps.append(PlannedStep(step.kind, step.description, counts))
    return DryRun(
        profile.name,
        profile.sha256,
        found.unclassified,
        found.vanished,
        steps,
        run_checks(t, profile, reporter),
    )


def _touches_missing(step: rules.Step, vanished: list[str]) -> bool:
    """A step naming a vanished table or column cannot be counted (its query would fail)."""
    return any(name in step.description for name in vanished)
