"""What each script statement changed, in the result (and so the run record and the manifest): a
statement that changes no rows is a warning, or fatal where the profile says ``expect_rows = true``.

A script whose ``WHERE`` stopped matching after a schema or data change used to pass in silence,
its output discarded; now the run says which statement of which script changed nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataferry.artifacts import Sanitisation
from dataferry.engines import statements
from dataferry.engines.statements import Changed
from dataferry.errors import SanitisationFailed
from dataferry.progress import Reporter
from dataferry.sanitise.profile import Profile

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target


def record(script: str, changed: list[Changed], profile: Profile, reporter: Reporter) -> list[dict[str, Any]]:
    """One entry per data-changing statement of ``script``; 0 rows warns, or raises with
    ``expect_rows``."""
    out = []
    for c in changed:
        name = script.removeprefix("script ")
        out.append({"script": name, "statement": c.statement, "kind": c.kind, "rows": c.rows})
        reporter.info(f"sanitise: script {name}: statement {c.statement} ({c.kind}) changed {c.rows} row(s)")
        if c.rows:
            continue
        text = zero(out[-1])
        if profile.expect_rows:
            raise SanitisationFailed(
                f"{text}, and the profile sets expect_rows = true",
                hint="nothing was published or swapped in; fix the statement (its WHERE no longer "
                "matches anything?) or, if changing nothing is fine now, remove expect_rows",
            )
        reporter.warn(f"warning: {text}")
    return out


def zero(entry: dict[str, Any]) -> str:
    """The warning for a statement that changed no rows."""
    return f"script {entry['script']}: statement {entry['statement']} ({entry['kind']}) changed 0 rows"


def attach(result: Sanitisation, statements: list[dict[str, Any]]) -> Sanitisation:
    """``result`` with the statements and their warnings (``statements``, ``warnings``)."""
    if not statements:
        return result
    warnings = [zero(s) for s in statements if s["rows"] == 0]
    return result.model_copy(update={"statements": statements, "warnings": warnings})


def planned(t: Target, sql: str, script: str) -> list[tuple[str, int]]:
    """For a dry run: the rows each plain ``UPDATE``/``DELETE`` of a script would touch now (a
    ``count(*)`` with its ``WHERE``), numbered as the run numbers them; nothing is run."""
    out = []
    number = 0
    for statement in statements.split(sql):
        if statements.kind(statement) not in statements.CHANGING:
            continue
        number += 1
        query = statements.count_query(statement)
        if query is None:
            continue
        try:
            rows = t.query(query, f"count {script} statement {number}")
        except SanitisationFailed:
            continue  # e.g. a table an earlier statement of the script creates: not counted
        label = f"{script}: statement {number} ({statements.kind(statement)})"
        out.append((label, int(str(rows[0][0] or 0))))
    return out
