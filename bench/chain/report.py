"""The chain benchmark's Markdown report (bench/chain/run.py measures, this renders)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import common
from run import F_INT, F_PROD, F_STAGING, FERRY, G_BACKUP, G_INT, G_PROD, G_RESTORE, G_UPDATE, GOVUK, PROFILE

#: Issue 15: dataferry's chain at least this many times faster than GOV.UK's, end to end.
TARGET = 2.0


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _sum(r: Any, labels: Sequence[str], what: str) -> float:
    """Sum over stages of their median wall (``seconds``), CPU (``cpu``) or server CPU."""
    total = 0.0
    for label in labels:
        s = r.series[label]
        if what == "seconds":
            total += s.seconds
        elif what == "cpu":
            total += s.cpu_seconds + s.s3_cpu_seconds
        else:
            total += _median(r.server_seconds.get(label, []))
    return total


def _cells(r: Any, labels: Sequence[str]) -> list[str]:
    wall = _sum(r, labels, "seconds")
    return [f"{wall:.2f}", f"{_sum(r, labels, 'cpu'):.1f}", f"{_sum(r, labels, 'server'):.1f}"]


def _spread(r: Any, labels: Sequence[str]) -> str:
    """Range of the end-to-end wall time over rounds (each round's stages summed)."""
    rounds = len(r.series[labels[0]].runs)
    if rounds < 2:
        return ""
    totals = [sum(r.series[label].runs[i].seconds for label in labels) for i in range(rounds)]
    return f" ({min(totals):.2f}..{max(totals):.2f})"


def engine_section(r: Any) -> str:
    """One engine and size: the stage table, the verdict, the checks."""
    g = r.generated

    def row(stage: str, govuk: Sequence[str], ferry: Sequence[str]) -> list[str]:
        ratio = common.ratio(_sum(r, govuk, "seconds"), _sum(r, ferry, "seconds"))
        rss = common.mib(max((r.series[x].ferry_rss_kib or 0) for x in ferry))
        return [stage, *_cells(r, govuk), *_cells(r, ferry), rss, ratio]

    def part(stage: str, label: str) -> list[str]:
        return [f"- of which {stage} (GOV.UK)", *_cells(r, [label]), "", "", "", "", ""]

    total = row("**end to end**", GOVUK, FERRY)
    total[1] = f"**{total[1]}**{_spread(r, GOVUK)}"
    total[4] = f"**{total[4]}**{_spread(r, FERRY)}"
    rows = [
        row("production backup", [G_PROD], [F_PROD]),
        row("staging: restore, mask 3 columns, backup", [G_RESTORE, G_UPDATE, G_BACKUP], [F_STAGING]),
        part("restore + swap", G_RESTORE),
        part("UPDATE of 3 columns", G_UPDATE),
        part("backup", G_BACKUP),
        row("integration restore", [G_INT], [F_INT]),
        total,
    ]
    header = [
        "stage",
        "GOV.UK wall s",
        "GOV.UK CPU s (tools + moto)",
        "GOV.UK server CPU s",
        "dataferry wall s",
        "dataferry CPU s (process tree + moto)",
        "dataferry server CPU s",
        "dataferry peak RSS MiB",
        "GOV.UK / dataferry (wall)",
    ]
    govuk, ferry = _sum(r, GOVUK, "seconds"), _sum(r, FERRY, "seconds")
    speed = govuk / ferry if ferry else 0.0
    steps = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in r.staging_steps)
    objects = ", ".join(f"{k} {common.human_size(v)}" for k, v in r.objects.items())
    return "\n".join(
        [
            f"### {r.engine}, {r.size_mb} MB",
            "",
            f"Production database: {common.human_size(g.size_bytes)}, "
            + ", ".join(f"{n} {t}" for t, n in g.rows.items())
            + f" rows (generated in {g.seconds:.0f} s). Stored: {objects}. "
            f"Load average after this engine and size: {r.load_end}.",
            "",
            common.markdown_table(header, rows),
            "",
            f"- dataferry's chain at least {TARGET:.0f}x faster than GOV.UK's, end to end: "
            f"{speed:.2f}x {common.verdict(speed >= TARGET)}",
            f"- dataferry's staging job, step by step (its run record): {steps or 'not recorded'}",
            *[f"- checked: {line}" for line in r.checks],
            "",
        ]
    )


def render(argv: list[str], facts: list[tuple[str, str]], results: list[Any], jobs: str) -> str:
    """The whole results file."""
    settings = []
    for r in results:
        line = f"- {r.engine}: " + ", ".join(f"`{k}={v}`" for k, v in sorted(r.settings.items()))
        if line not in settings:
            settings.append(line)
    last = results[-1].series if results else {}
    return "\n".join(
        [
            "# The nightly chain: dataferry against GOV.UK's Kubernetes db-backup",
            "",
            f"`.venv/bin/python bench/chain/run.py {' '.join(argv)}`",
            "",
            common.markdown_table(["machine", ""], [list(f) for f in facts]),
            "",
            "Servers: throwaway servers of tests/servers.py (one PostgreSQL cluster, one MariaDB server; "
            "production, staging and integration are separate databases on it), tuned as bench/pg and "
            "bench/mysql tune them:",
            *settings,
            "",
            "S3: one moto server in its own process on the same machine, for both ways. GOV.UK's way uses "
            "the aws CLI (`aws s3 cp - URL` to upload, `aws s3 cp URL -` to download in one GET, as "
            "`s5cmd cat -c1` does). dataferry runs with its default settings; a restore without `--jobs` "
            f"used `--jobs {jobs}` (RestoreRequest's default in this checkout).",
            "",
            'GOV.UK\'s way follows their Kubernetes `db-backup` chart (govuk-env-sync.md, "Kubernetes"): '
            "PostgreSQL dumps are `pg_dump -Fc -Z1` (custom format compressed by pg_dump, not piped "
            "through gzip), restored with `pg_restore --no-comments -f - | psql` into `<db>_restore` with "
            "`session_replication_role = replica`, then renamed into place; MariaDB dumps are "
            "`mariadb-dump --single-transaction | gzip -1`, restored with drop, create and "
            "`gunzip | mariadb` (unique and foreign-key checks off), no shadow. The transform is the "
            "UPDATE below, run on the live staging database. `ON_ERROR_STOP` is added to their psql so "
            "that a failed load stops the benchmark instead of leaving an incomplete database.",
            "",
            "Columns: wall time is the median over rounds of each stage (a stage is one command; every "
            "stage starts after a CHECKPOINT or InnoDB flush and a `sync`, untimed), end to end is their "
            "sum (range over rounds in brackets). CPU is the measured process tree's (plus moto's own) and "
            "the server's (all its processes), since the loads, the UPDATE and the scan run in the server.",
            "",
            "## Results",
            "",
            *[engine_section(r) for r in results],
            "## dataferry's sanitisation profile",
            "",
            "```toml",
            PROFILE.rstrip(),
            "```",
            "",
            "## Commands (last engine and size)",
            "",
            common.commands_section(last) if last else "",
            f"GOV.UK's transform: `{_transform(results)}`",
            "",
        ]
    )


def _transform(results: list[Any]) -> str:
    import engines

    return (
        engines.GOVUK_TRANSFORM_MYSQL.strip()
        if results and results[-1].engine == "MariaDB"
        else engines.GOVUK_TRANSFORM_PG.strip()
    )


__all__ = ["G_BACKUP", "render"]
