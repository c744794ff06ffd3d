"""Jobs: the ordered steps for one database in one environment, run, recorded, locked and held.

- ``runs``, ``locks``, ``holds`` (gathered in ``state``; shared plumbing in ``common``): run
  records, locks and holds, kept in each environment's store under ``_dataferry/`` so that every
  machine sharing a bucket shares them;
- ``runner``: runs one job's steps under its lock (``steps``, ``hooks``), stops safely (``stop``),
  records each step, retries transient failures; ``plan``: the dry run;
- ``status``: what ``dataferry status`` reports, as a typed model;
- ``triggers``: schedules and ``after``; ``scheduler``: finds due and triggered jobs and runs them,
  a few at a time, each in a child process (``child``).
"""

from __future__ import annotations
