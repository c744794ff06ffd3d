"""The file's cross-references: names that must exist (environments, databases, jobs), ``after``
chains without loops, valid names. Checked on plain data, so that they are reported with every other
problem of the file, even when its fields did not validate."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What names of environments, databases and jobs may look like (they become keys and file names).
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

#: Where in the file a problem is: the keys from the top (``("jobs", "nightly", "after")``).
Location = tuple[str, ...]


def _table(value: object) -> dict[str, Any]:
    """A table of the file, or an empty one where the file has something else (a problem of its
    own, reported by field validation)."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def reference_problems(data: Mapping[str, Any]) -> list[tuple[Location, str]]:
    """What names something that does not exist, or loops, in the file's plain data: run on the
    validated model, and on the raw file when fields failed, so that these are reported in the
    same go as those (not only once the others are fixed)."""
    envs, dbs, jobs = (_table(data.get(k)) for k in ("environments", "databases", "jobs"))
    problems: list[tuple[Location, str]] = []
    for section, table in (("environments", envs), ("databases", dbs), ("jobs", jobs)):
        for name in table:
            if not re.match(NAME_RE, name):
                problems.append(((section, name), "names use letters, digits, '.', '_' and '-'"))
    for db_name, db in dbs.items():
        for env_name in _table(_table(db).get("environments")):
            if env_name not in envs:
                problems.append((("databases", db_name, "environments", env_name), "no such environment"))
    for job_name in jobs:
        problems += _job_problems(envs, dbs, jobs, job_name)
    state_env = _table(data.get("settings")).get("state_environment")
    if isinstance(state_env, str) and state_env and state_env not in envs:
        problems.append((("settings", "state_environment"), f"no such environment {state_env!r}"))
    return problems


def _job_problems(
    envs: dict[str, Any], dbs: dict[str, Any], jobs: dict[str, Any], job_name: str
) -> list[tuple[Location, str]]:
    def at(key: str) -> Location:
        return ("jobs", job_name, key)

    job = _table(jobs[job_name])
    environment, database, after = job.get("environment"), job.get("database"), job.get("after")
    raw_steps = job.get("steps")
    steps = [s for s in raw_steps if isinstance(s, str)] if isinstance(raw_steps, list) else []
    out: list[tuple[Location, str]] = []
    if isinstance(environment, str) and environment not in envs:
        out.append((at("environment"), f"no such environment {environment!r}"))
    if isinstance(database, str) and database not in dbs:
        out.append((at("database"), f"no such database {database!r}"))
    if isinstance(after, str) and after not in jobs:
        out.append((at("after"), f"no such job {after!r}"))
    for step in steps:
        if step.startswith("restore:") and step.split(":", 1)[1] not in envs:
            out.append((at("steps"), f"{step!r} names no known environment"))
        if step == f"restore:{environment}":
            out.append((at("steps"), f"{step!r} restores the job's own environment into itself"))
        if step == "backup:sanitised" and isinstance(database, str) and database in dbs:
            db = _table(dbs[database])
            if not (db.get("sanitise") and db.get("scratch")):
                out.append(
                    (
                        at("steps"),
                        f"'backup:sanitised' needs [databases.{database}] sanitise and scratch "
                        "(the profile, and the database it sanitises a copy in)",
                    )
                )
    if "prune" in steps and isinstance(environment, str) and environment in envs:
        db_name = database if isinstance(database, str) else "DB"
        out += _prune_problems(_table(envs[environment]), environment, db_name, at("steps"))
    if isinstance(after, str) and after in jobs:
        after_steps = _table(jobs[after]).get("steps") or []
        if not any(isinstance(s, str) and s.split(":", 1)[0] == "backup" for s in after_steps):
            out.append((at("after"), f"job {after!r} has no backup step, so it never publishes an artifact"))
        if _after_cycle(jobs, job_name):
            out.append((at("after"), f"the 'after' chain loops back to {job_name!r}"))
    return out


def _prune_problems(
    env: dict[str, Any], name: str, database: str, where: Location
) -> list[tuple[Location, str]]:
    """A prune step that could only fail, after the job's other steps ran: no policy to apply, or a
    protected environment, which only 'dataferry prune --force' prunes (a job has no --force)."""
    if env.get("protected") is True:
        return [
            (
                where,
                f"'prune': {name} is protected, and a job has no --force; remove the step and prune "
                f"by hand: 'dataferry prune {database} --env {name} --force'",
            )
        ]
    if env.get("retention") is None:
        return [(where, f"'prune' needs [environments.{name}] retention (which artifacts to keep)")]
    return []


def _after_cycle(jobs: dict[str, Any], start: str) -> bool:
    """True if following ``after`` from ``start`` comes back to it."""
    seen: set[str] = set()
    current = _table(jobs[start]).get("after")
    while isinstance(current, str) and current in jobs and current not in seen:
        if current == start:
            return True
        seen.add(current)
        current = _table(jobs[current]).get("after")
    return False
