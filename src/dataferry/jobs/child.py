"""One triggered run, as the scheduler starts it in its own process::

    python -m dataferry.jobs.child --config PATH [--json-logs] --trigger schedule|after --trigger-detail D -- JOB

It behaves like ``dataferry run JOB``: the same logs on stderr, the run's summary on stdout, and on
a ``FerryError`` its ``error:``/``hint:`` lines and exit code (5 held, 6 lock busy, ...), which the
scheduler reads. After taking the lock the run re-checks that its trigger was not handled meanwhile
by another machine (``triggers.still_due``); if it was, nothing is recorded and it exits 0.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import NoReturn

from dataferry.config import find_config_path, load
from dataferry.errors import FerryError
from dataferry.jobs.common import StoreCache
from dataferry.jobs.runner import RunOptions, run_job
from dataferry.jobs.runs import RunRecord
from dataferry.jobs.triggers import still_due
from dataferry.progress import LogReporter, default_reporter, human_duration

TRIGGERS = ("schedule", "after")


def run_summary(r: RunRecord) -> str:
    """``job J: run R succeeded in 1.2s; restored A; published B``: what a finished run printed."""
    parts = [f"job {r.job}: run {r.run_id} {r.status} in {human_duration(r.duration() or 0)}"]
    if r.restored_artifact:
        parts.append(f"restored {r.restored_artifact}")
    if r.published_artifact:
        parts.append(f"published {r.published_artifact}")
    return "; ".join(parts)


def argv_for(config: str, job: str, trigger: str, detail: str, *, json_logs: bool = False) -> list[str]:
    """The arguments (after ``python``) that run ``job`` for ``trigger`` in a child process."""
    argv = ["-m", __name__, "--config", config]
    if json_logs:
        argv.append("--json-logs")
    return [*argv, "--trigger", trigger, f"--trigger-detail={detail}", "--", job]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataferry.jobs.child", description=__doc__)
    parser.add_argument("--config", required=True, help="the scheduler's config file")
    parser.add_argument("--json-logs", action="store_true", help="log as JSON lines on stderr")
    parser.add_argument("--trigger", required=True, choices=TRIGGERS)
    parser.add_argument("--trigger-detail", required=True, help="the fire time or the upstream artifact id")
    parser.add_argument("job")
    return parser


def run(argv: list[str] | None = None) -> int:
    """Run the job ``argv`` names; returns the exit code (usage errors exit 2 at once)."""
    args = _parser().parse_args(argv)
    try:
        cfg = load(find_config_path(args.config))
        stores = StoreCache(cfg)
        record = run_job(
            cfg,
            args.job,
            RunOptions(trigger=args.trigger, trigger_detail=args.trigger_detail),
            reporter=default_reporter(json_logs=args.json_logs),
            stores=stores,
            still_due=functools.partial(still_due, cfg, args.job, args.trigger, args.trigger_detail, stores),
        )
    except FerryError as exc:
        if args.json_logs:  # every line JSON, the last one too
            LogReporter(sys.stderr, as_json=True).failed(exc)
        else:
            for line in exc.report_lines():
                print(line, file=sys.stderr)
        return exc.exit_code
    if record is not None:
        print(run_summary(record))
    return 0


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of ``python -m dataferry.jobs.child``."""
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
