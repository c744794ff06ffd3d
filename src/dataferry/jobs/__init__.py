"""Jobs: the ordered steps for one database in one environment, run, recorded, locked and held.

- ``state``: run records, locks and holds, kept in each environment's store under ``_dataferry/``
  so that every machine sharing a bucket shares them;
- ``runner``: runs one job's steps under its lock, records each step, retries transient failures;
- ``scheduler``: finds due and triggered jobs and runs them, a few at a time.
"""

from __future__ import annotations
