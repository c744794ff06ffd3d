"""Run records, locks and holds: small JSON objects in an environment's store under ``_dataferry/``.

They are kept in ``runs``, ``locks`` and ``holds`` (shared plumbing in ``common``); this module
gathers their names, so ``from dataferry.jobs.state import ...`` keeps working.

Layout (in the store of the job's environment)::

    _dataferry/runs/<job>/<run-id>.json        one record per run; run ids sort chronologically
    _dataferry/locks/<job>.json                the job's lock (created exclusively)
    _dataferry/locks/<job>.takeover/<token>    one marker per expired lock that was taken over
    _dataferry/holds/job/<job>.json            a hold on one job
    _dataferry/holds/env/<environment>.json    a hold on every job of an environment
    _dataferry/holds/all.json                  a hold on everything (see ``global_hold_environments``)

Nothing here needs a server besides the store: a lock is an object created with ``create_exclusive``
(S3 conditional write, ``O_EXCL`` locally), so two machines sharing a bucket share locks, holds and
history. Clocks matter only for lock expiry and hold expiry; keep machines NTP-synced and the lock
TTL far above any clock skew.
"""

from __future__ import annotations

from dataferry.jobs.common import PREFIX, StateModel, StoreCache, now_utc, whoami
from dataferry.jobs.holds import (
    Hold,
    HoldScope,
    active_holds,
    delete_hold,
    global_hold_environment_for,
    global_hold_environments,
    hold_key,
    jobs_under,
    publish_held,
    read_hold,
    write_hold,
)
from dataferry.jobs.locks import (
    JobLock,
    LockInfo,
    Takeover,
    break_lock,
    lock_key,
    lock_ttl,
    read_lock,
    takeover_key,
)
from dataferry.jobs.runs import (
    CONSUMING,
    RUN_FORMAT_VERSION,
    ErrorInfo,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    iter_runs,
    last_run,
    new_run_id,
    read_run,
    run_ids,
    run_key,
    write_run,
)

__all__ = [
    "CONSUMING",
    "PREFIX",
    "RUN_FORMAT_VERSION",
    "ErrorInfo",
    "Hold",
    "HoldScope",
    "JobLock",
    "LockInfo",
    "RunRecord",
    "RunStatus",
    "StateModel",
    "StepRecord",
    "StepStatus",
    "StoreCache",
    "Takeover",
    "active_holds",
    "break_lock",
    "delete_hold",
    "global_hold_environment_for",
    "global_hold_environments",
    "hold_key",
    "iter_runs",
    "jobs_under",
    "last_run",
    "lock_key",
    "lock_ttl",
    "new_run_id",
    "now_utc",
    "publish_held",
    "read_hold",
    "read_lock",
    "read_run",
    "run_ids",
    "run_key",
    "takeover_key",
    "whoami",
    "write_hold",
    "write_run",
]
