"""Every object of a database that can hold data or text, by kind, and what happens to each.

Tables are classified, masked and scanned. Objects derived from them are made again from the
sanitised tables after the rules (``Dialect.finish``): PostgreSQL materialised views are refreshed,
MariaDB system-versioned tables lose their history rows, SQLite full-text indexes are rebuilt and
the file is vacuumed. An object of a kind the dialect does not know (``Dialect.known_kinds``) stops
the run with its name, rather than being published unchecked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataferry.errors import SanitisationFailed
from dataferry.progress import Reporter

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target


def read(t: Target) -> dict[str, str]:
    """``{name: kind}`` of every object that can hold data, in the order the dialect lists them."""
    kinds = {str(row[0]): str(row[1]) for row in t.query(t.dialect.objects_query(), "list objects")}
    t.known |= set(kinds)
    return kinds


def require_known(t: Target, kinds: dict[str, str]) -> None:
    """Raise ``SanitisationFailed`` naming every object of a kind the dialect cannot check."""
    unknown = [f"{kind} {name}" for name, kind in kinds.items() if kind not in t.dialect.known_kinds]
    if unknown:
        raise SanitisationFailed(
            f"the sanitiser cannot check {', '.join(unknown)} on {t.where}: "
            "its data is not in a form the rules and the scan can read",
            hint="drop or empty it in one of the profile's scripts (or in production) and run again "
            "(a table with row-level security: sanitise as its owner, a superuser or a BYPASSRLS role); "
            "docs/sanitisation.md lists the object kinds covered on each engine",
        )


def finish(t: Target, kinds: dict[str, str], large_objects: str, reporter: Reporter) -> list[str]:
    """Rebuild derived objects from the sanitised tables, and drop the large objects the profile
    does not keep; returns what was done, for the manifest."""
    done = []
    steps = t.dialect.finish(kinds)
    if "large objects" in kinds.values():  # PostgreSQL only; before the refreshes, which are reads
        drop = large_objects == "drop"
        what = "drop every large object" if drop else "drop orphaned large objects"
        steps.insert(0, (what, t.dialect.large_objects(drop)))
    for description, sql in steps:
        reporter.info(f"sanitise: {description}")
        t.run(sql, description)
        done.append(description)
    return done
