"""User triggers are paused while a profile's scripts and rules run.

An audit trigger that copies ``OLD`` values into a history table would otherwise write the very
values the rules replace, and a trigger could refill a table a rule has just emptied. PostgreSQL
disables each trigger and rewrite rule of a table (``ALTER TABLE ... DISABLE TRIGGER``, foreign-key
triggers untouched so cascades still run); MySQL, MariaDB and SQLite cannot disable a trigger, so it
is dropped and created again from its own definition afterwards. Everything is put back before the
checks run, so the checks see the database exactly as it will be published.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dataferry.progress import Reporter
from dataferry.sanitise import objects

if TYPE_CHECKING:
    from dataferry.sanitise.execution import Target


@contextlib.contextmanager
def paused(t: Target, reporter: Reporter) -> Iterator[None]:
    """Turn every user trigger of ``t`` off for the body, and back on afterwards.

    On a failure inside the body the triggers are put back as far as possible and the failure is
    raised (the shadow or scratch copy is dropped after a failure anyway)."""
    rows = t.query(t.dialect.triggers_query(), "list triggers")
    t.known |= {str(r[1]) for r in rows} | {str(r[0]) for r in rows}
    toggles = [(str(r[0]), *t.dialect.trigger_toggles(r)) for r in rows]
    if not toggles:
        yield
        return
    reporter.info(f"sanitise: {len(toggles)} trigger(s) paused while scripts and rules run")
    t.run("\n".join(off for _, off, _ in toggles), "pause triggers")
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            _restore(t, toggles)
        raise
    _restore(t, toggles)


def _restore(t: Target, toggles: list[tuple[str, str, str]]) -> None:
    """Each trigger back, one at a time (a MySQL trigger body is a statement of its own), except
    those of tables a script dropped (their triggers went with them)."""
    present = objects.read(t)
    for table, _, on in toggles:
        if table in present:
            t.run(on, "restore triggers")
