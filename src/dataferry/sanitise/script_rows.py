"""What each script statement changed, in the result (and so the run record and the manifest): a
statement that changes no rows is a warning, or fatal where the profile says ``expect_rows = true``.

A script whose ``WHERE`` stopped matching after a schema or data change used to pass in silence,
its output discarded; now the run says which statement of which script changed nothing.
"""

from __future__ import annotations

from typing import Any

from dataferry.artifacts import Sanitisation
from dataferry.engines.statements import Changed
from dataferry.errors import SanitisationFailed
from dataferry.progress import Reporter
from dataferry.sanitise.profile import Profile


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
