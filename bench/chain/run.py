"""Benchmark the whole nightly chain, dataferry against GOV.UK's Kubernetes ``db-backup`` (issue 15).

    .venv/bin/python bench/chain/run.py --size-mb 256 1024

The chain is the quickstart's (src/dataferry/quickstart.py): production is backed up; staging
restores it, masks three personal columns, checks and backs it up again; integration restores
staging's backup. For each engine (PostgreSQL, MariaDB) and size, on throwaway servers and one
moto S3 server started here:

1. generate the production database (bench/pg and bench/mysql's generators);
2. run the chain GOV.UK's way (docs: /work/shared/reference/govuk-env-sync.md, "Kubernetes"):
   dump | upload, download | restore + rename swap, an in-place UPDATE of the three columns,
   dump | upload, download | restore, each stage a shell pipeline with the aws CLI for S3;
3. run it dataferry's way: three jobs (``dataferry run``) with default settings, the staging job
   ``restore:production, sanitise, backup`` with a three-rule profile and the gate's scan;
4. check both: exact row counts after every restore, md5 fingerprints of the final integration
   databases' ordered exports against production's, and every masked value against what its
   rule must produce;
5. write a Markdown report to bench/results/chain-<sizes>-<time>.md.

bench/README.md ("The nightly chain") explains the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent / "pg"), str(HERE.parent / "mysql")]

import common  # noqa: E402
from common import Series  # noqa: E402
from engines import ChainEngine, MariaChain, PgChain  # noqa: E402

SALT = "bench-chain-salt-5b1e07c2"
SALT_ENV = "BENCH_SALT"
DATABASE = "bench"
JOBS = {env: f"{DATABASE}-{env}" for env in ("production", "staging", "integration")}

PROFILE = f"""\
description = "bench/chain: three masking rules on users, everything else kept"
salt_env = "{SALT_ENV}"
strict = true

[tables.users]
keep = ["id", "created_at"]
[tables.users.mask]
email = "fake_email"
name = "fake_name"
bio = "redact"

[tables.documents]
keep = ["id", "content_id", "user_id", "title", "body", "details", "published_at", "updated_at"]

[tables.events]
keep = ["id", "document_id", "kind", "payload", "occurred_at"]

[scan]
# The generator's session ids are 12 hex digits of an md5, about 0.4% of them all digits, which
# the phone detector rightly cannot tell from a phone number: left out, as an operator would.
# MariaDB's content_id is a uuid kept as CHAR(36) text (PostgreSQL's is a uuid, not scanned): at
# 1 GB a few of them hold a run of digits the detector reads as a phone number (seen), so the same.
skip = ["events.payload", "documents.content_id"]
"""

G_PROD = "GOV.UK production: backup (dump | upload)"
G_RESTORE = "GOV.UK staging: restore (download | load, swap)"
G_UPDATE = "GOV.UK staging: transform (UPDATE of 3 columns)"
G_BACKUP = "GOV.UK staging: backup (dump | upload)"
G_INT = "GOV.UK integration: restore (download | load, swap)"
F_PROD = "dataferry production: job (backup)"
F_STAGING = "dataferry staging: job (restore, sanitise + gate, backup)"
F_INT = "dataferry integration: job (restore)"
GOVUK = (G_PROD, G_RESTORE, G_UPDATE, G_BACKUP, G_INT)
FERRY = (F_PROD, F_STAGING, F_INT)


class ChainRunner(common.Runner):
    """A Runner that also records the server's CPU time during each measurement (the loads, the
    UPDATE and the scan run in the server, not in the measured process tree)."""

    def __init__(self, engine: ChainEngine, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.server_seconds: dict[str, list[float]] = {}

    def _record(self, label: str, measure: Any, before: Any, after: Any) -> Series:
        def with_server() -> common.Measurement:
            start = self.engine.server_cpu()
            run: common.Measurement = measure()
            self.server_seconds.setdefault(label, []).append(self.engine.server_cpu() - start)
            return run

        return super()._record(label, with_server, before, after)


@dataclass
class Result:
    """Everything measured for one engine and size."""

    engine: str
    size_mb: int
    generated: Any
    series: dict[str, Series]
    server_seconds: dict[str, list[float]]
    staging_steps: list[tuple[str, float]]
    checks: list[str]
    objects: dict[str, int]
    settings: dict[str, str]
    load_end: str = ""
    notes: list[str] = field(default_factory=list)


def write_config(
    path: Path,
    engine: ChainEngine,
    s3: common.S3Endpoint,
    dbs: dict[str, str],
    key: Path,
    public: str,
    profile: Path,
    prefix: str,
) -> None:
    """The chain's dataferry config: three environments on S3 (moto), production protected,
    staging and integration requiring sanitised (signed) data; three jobs chained by ``after``.
    Nothing else is set: dataferry's defaults apply (compression, --jobs, part sizes)."""

    def store(env: str) -> str:
        return (
            f'{{ url = "s3://{s3.bucket}/{prefix}/{env}", endpoint_url = "{s3.endpoint_url}", '
            f'region = "{s3.region}", access_key_id_env = "{common.S3_KEY_ENV}", '
            f'secret_access_key_env = "{common.S3_SECRET_ENV}" }}'
        )

    def url(env: str) -> str:
        return f'{{ url = "{engine.url(dbs[env])}", password_env = "{common.PASSWORD_ENV}" }}'

    path.write_text(
        f"""# generated by bench/chain for one run
[settings]
signing_key_file = "{key}"

[environments.production]
store = {store("production")}
protected = true
[environments.staging]
store = {store("staging")}
requires_sanitised = true
trusted_keys = ["{public}"]
[environments.integration]
store = {store("integration")}
requires_sanitised = true
trusted_keys = ["{public}"]

[databases.{DATABASE}]
engine = "{engine.dataferry_engine}"
sanitise = "{profile}"
[databases.{DATABASE}.environments]
production = {url("production")}
staging = {url("staging")}
integration = {url("integration")}

[jobs.{JOBS["production"]}]
environment = "production"
database = "{DATABASE}"
steps = ["backup"]

[jobs.{JOBS["staging"]}]
environment = "staging"
database = "{DATABASE}"
steps = ["restore:production", "sanitise", "backup"]
after = "{JOBS["production"]}"

[jobs.{JOBS["integration"]}]
environment = "integration"
database = "{DATABASE}"
steps = ["restore:staging"]
after = "{JOBS["staging"]}"
"""
    )


def keypair(workdir: Path) -> tuple[Path, str]:
    """A signing key made with ``dataferry keygen`` and its public key."""
    key = workdir / "signing.key"
    dataferry = [str(common.PYTHON), "-m", "dataferry"]
    subprocess.run(
        [*dataferry, "keygen", "--out", str(key)], check=True, capture_output=True, env=common.clean_env()
    )
    shown = subprocess.run(
        [*dataferry, "keygen", "--show", str(key)],
        check=True,
        capture_output=True,
        text=True,
        env=common.clean_env(),
    ).stdout
    public = next(word.strip('"[]') for word in shown.split() if len(word.strip('"[]')) > 40)
    return key, public


class Chain:
    """One engine and size: the production database, both chains, their checks."""

    def __init__(
        self,
        engine: ChainEngine,
        s3: common.S3Endpoint,
        aws: Path,
        workdir: Path,
        size_mb: int,
        args: argparse.Namespace,
        key: tuple[Path, str],
    ) -> None:
        self.engine = engine
        self.s3 = s3
        self.aws = aws
        self.size_mb = size_mb
        tag = f"{engine.dataferry_engine}_{size_mb}"
        self.src = f"prod_{tag}"
        self.ferry = {
            "production": self.src,
            "staging": f"ferry_staging_{tag}",
            "integration": f"ferry_integration_{tag}",
        }
        self.govuk = {"staging": f"govuk_staging_{tag}", "integration": f"govuk_integration_{tag}"}
        self.prefix = f"chain-{tag}"
        self.workdir = workdir
        profile = workdir / f"profile-{tag}.toml"
        profile.write_text(PROFILE)
        self.transform = workdir / f"govuk-transform-{tag}.sql"
        self.transform.write_text(engine.transform_sql())
        self.config = workdir / f"dataferry-{tag}.toml"
        write_config(self.config, engine, s3, self.ferry, key[0], key[1], profile, self.prefix)
        self.ferry_env = {**common.ferry_env(self._password(), s3), SALT_ENV: SALT}
        self.runner = ChainRunner(
            engine,
            config=self.config,
            log=workdir / f"chain-{tag}.log",
            repeat=1,
            quiet=not args.keep_logs,
            tool_env=engine.tool_env,
            ferry_env=self.ferry_env,
            settle=engine.settle,
            s3_pid=s3.pid,
        )
        self.generated = engine.generate(self.src, size_mb)
        self.expected = engine.row_counts(self.src)
        self.prod_prints = {
            "documents": engine.fingerprint(self.src, "documents"),
            "events": engine.fingerprint(self.src, "events"),
            "users (id, created_at)": engine.fingerprint(self.src, "users", "id, created_at"),
        }
        self.checks: list[str] = []
        self.round = 0
        for db in [*self.ferry.values(), *self.govuk.values()][1:]:
            engine.drop(db)
            engine.create(db)  # a live database to replace, as in real life

    def _password(self) -> str:
        return str(self.engine.server.password)  # type: ignore[attr-defined]

    # -- GOV.UK's way --------------------------------------------------------------------------

    def _url(self, env: str) -> str:
        return f"s3://{self.s3.bucket}/govuk-{self.prefix}/{env}/round{self.round}-{DATABASE}.gz"

    def _cp(self, src: str, dst: str) -> str:
        return f"{self.aws} s3 cp {src} {dst} --endpoint-url {self.s3.endpoint_url} --only-show-errors"

    def govuk_chain(self) -> None:
        """dump | upload; download | restore + swap; UPDATE; dump | upload; download | restore."""
        r, e = self.runner, self.engine
        up = common.aws_env(self.s3)  # uploads: the CLI's multipart defaults (s5cmd pipe also streams parts)
        down = common.aws_env(self.s3, whole_objects=self.workdir / "aws-whole-objects.cfg")  # s5cmd cat -c1
        strict = "set -euo pipefail\n"
        r.raw(G_PROD, f"{strict}{e.dump_cmd(self.src)} | {self._cp('-', self._url('production'))}", env=up)
        r.raw(
            G_RESTORE,
            strict + e.restore_script(self.govuk["staging"], self._cp(self._url("production"), "-")),
            env=down,
            after=lambda: self.check_rows(self.govuk["staging"], "GOV.UK staging"),
        )
        r.raw(G_UPDATE, f"{strict}{e.transform_cmd(self.govuk['staging'], self.transform)}")
        r.raw(
            G_BACKUP,
            f"{strict}{e.dump_cmd(self.govuk['staging'])} | {self._cp('-', self._url('staging'))}",
            env=up,
        )
        r.raw(
            G_INT,
            strict + e.restore_script(self.govuk["integration"], self._cp(self._url("staging"), "-")),
            env=down,
        )
        self.verify(self.govuk["integration"], "GOV.UK", self.expected_govuk)

    # -- dataferry's way -----------------------------------------------------------------------

    def ferry_chain(self) -> None:
        """Three jobs, run as the scheduler would after each other: ``dataferry run JOB``."""
        r = self.runner
        r.ferry(F_PROD, "run", JOBS["production"])
        r.ferry(
            F_STAGING,
            "run",
            JOBS["staging"],
            after=lambda: self.check_rows(self.ferry["staging"], "dataferry staging"),
        )
        r.ferry(F_INT, "run", JOBS["integration"])
        self.verify(self.ferry["integration"], "dataferry", self.expected_ferry)

    def staging_steps(self) -> list[tuple[str, float]]:
        """Each step's duration in the last staging run, from its run record."""
        out = subprocess.run(
            [
                str(common.PYTHON),
                "-m",
                "dataferry",
                "--config",
                str(self.config),
                "-q",
                "history",
                JOBS["staging"],
                "--json",
                "--limit",
                "1",
            ],
            env=self.ferry_env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        data = json.loads(out)
        record = data[0] if isinstance(data, list) else data
        steps = []
        for step in record.get("steps", []):
            from datetime import datetime

            if step.get("started_at") and step.get("finished_at"):
                seconds = (
                    datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(step["started_at"])
                ).total_seconds()
                steps.append((str(step["step"]), seconds))
        return steps

    # -- checks --------------------------------------------------------------------------------

    def check_rows(self, db: str, what: str) -> None:
        """Exact row counts, or the timing means nothing."""
        got = self.engine.row_counts(db)
        if got != self.expected:
            raise RuntimeError(f"{what} restore into {db} is incomplete: {got} != {self.expected}")

    @staticmethod
    def expected_govuk(uid: str, email: str, name: str, bio: str | None) -> tuple[str, str, str | None]:
        """What GOV.UK's UPDATE makes of a row."""
        return f"user_{uid}@example.com", f"user_{uid}", None if bio is None else "*" * len(bio)

    @staticmethod
    def expected_ferry(uid: str, email: str, name: str, bio: str | None) -> tuple[str, str, str | None]:
        """What dataferry's three rules make of a row (fakes.py is the reference of the SQL)."""
        from dataferry.sanitise import fakes

        return (
            fakes.fake_email(SALT, email, "example.com"),
            fakes.fake_name(SALT, name),
            None if bio is None else fakes.redact(bio),
        )

    def _users(self, db: str) -> dict[str, tuple[str, str, str | None]]:
        argv = self.engine.export_argv(db, "SELECT id, email, name, bio FROM users ORDER BY id")
        text = subprocess.run(
            argv, env=self.engine.tool_env, capture_output=True, text=True, check=True
        ).stdout
        rows = {}
        for line in text.splitlines():
            uid, email, name, bio = line.split("\t")
            rows[uid] = (email, name, None if bio in ("\\N", "NULL") else bio)
        return rows

    def verify(self, db: str, way: str, expect: Any) -> None:
        """Row counts, fingerprints of what is kept, and every masked value, on integration."""
        self.check_rows(db, f"{way} integration")
        e = self.engine
        prints = {
            "documents": e.fingerprint(db, "documents"),
            "events": e.fingerprint(db, "events"),
            "users (id, created_at)": e.fingerprint(db, "users", "id, created_at"),
        }
        for table, digest in prints.items():
            if digest != self.prod_prints[table]:
                raise RuntimeError(f"{way} integration: {table} differs from production ({digest})")
        prod, got = self._users(self.src), self._users(db)
        if prod.keys() != got.keys():
            raise RuntimeError(f"{way} integration: users' ids differ from production's")
        wrong = [uid for uid, row in prod.items() if got[uid] != expect(uid, *row)]
        survived = sum(got[uid][i] == row[i] for uid, row in prod.items() for i in (0, 1) if row[i])
        if wrong:
            raise RuntimeError(
                f"{way} integration: {len(wrong)} users not masked as expected (e.g. id {wrong[0]})"
            )
        fingerprints = ", ".join(f"{t} {d[:12]}" for t, d in prints.items())
        self.checks.append(
            f"{way}, round {self.round}: integration `{db}` has exactly production's rows "
            f"({', '.join(f'{t} {n}' for t, n in self.expected.items())}); md5 of the ordered export equals "
            f"production's for {fingerprints}; all {len(prod)} users' email, name and bio are masked exactly "
            f"as the rules say ({survived} production emails or names left)"
        )

    def objects(self) -> dict[str, int]:
        """Sizes of what each way stored for production (the last round's object / artifact)."""
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint_url,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            region_name=self.s3.region,
        )
        sizes = {}
        for label, prefix in (
            ("GOV.UK production object", f"govuk-{self.prefix}/production/round{self.round}"),
            ("dataferry production artifact", f"{self.prefix}/production/"),
        ):
            listed = client.list_objects_v2(Bucket=self.s3.bucket, Prefix=prefix).get("Contents", [])
            sizes[label] = common.largest_artifact(
                (o["Key"], o["Size"])
                for o in listed
                if not o["Key"].endswith(".json") and "/_dataferry/" not in o["Key"]
            )
        return sizes

    def run(self, repeat: int) -> Result:
        """GOV.UK's chain, then dataferry's, ``repeat`` times alternating."""
        steps: list[tuple[str, float]] = []
        for n in range(1, repeat + 1):
            self.round = n
            print(f"  round {n}: GOV.UK's way", flush=True)
            self.govuk_chain()
            print(f"  round {n}: dataferry's way", flush=True)
            self.ferry_chain()
            steps = self.staging_steps()
        objects = self.objects()
        for db in [*self.ferry.values(), *self.govuk.values()]:
            self.engine.drop(db)
        return Result(
            self.engine.name,
            self.size_mb,
            self.generated,
            self.runner.series,
            self.runner.server_seconds,
            steps,
            self.checks,
            objects,
            getattr(self.engine, "settings", {}),
            load_end=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        )


# -- servers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def server_for(name: str, servers: Any, workdir: Path, durable: bool) -> Iterator[ChainEngine]:
    """A throwaway server of the fixtures (tests/servers.py), tuned like bench/pg or bench/mysql."""
    if name == "postgresql":
        with servers.start_postgres() as pg:
            yield PgChain(servers, pg, durable)
    else:
        with servers.start_mariadb() as my:
            yield MariaChain(my, workdir, durable)


def restore_jobs() -> str:
    """The --jobs a restore gets when none is given (RestoreRequest's default in this checkout)."""
    code = "from dataferry.ops.restore_flow import RestoreRequest as R; print(R('d', 'e', 's').jobs)"
    out = subprocess.run([str(common.PYTHON), "-c", code], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def main(argv: list[str]) -> int:
    """Run the chain for every engine and size and write the results."""
    import report

    args = parse_args(argv)
    common.compile_dataferry()
    common.ensure_tools({"time": common.TIME, "gzip": "gzip"})
    sizes = sorted(args.size_mb)
    workdir = common.workdir_for(args.work_dir)
    servers = common.import_servers()
    results: list[Result] = []
    facts: list[tuple[str, str]] = []
    ok = False
    try:
        with common.moto_s3(workdir, workdir / "moto.log") as s3:
            aws = common.aws_cli(workdir)
            if aws is None:
                raise SystemExit(
                    "the GOV.UK way needs the aws CLI (or s5cmd); none could be found or installed"
                )
            key = keypair(workdir)
            facts = common.machine_facts(
                workdir, {"aws CLI": [str(aws), "--version"], "gzip": ["gzip", "--version"]}
            )
            for name in args.engines.split(","):
                with server_for(name, servers, workdir, args.durable) as engine:
                    facts += [(k, common._command_version(v)) for k, v in engine.versions().items()]
                    for size in sizes:
                        print(f"{engine.name} {size} MB: generating", flush=True)
                        chain = Chain(engine, s3, aws, workdir, size, args, key)
                        print(
                            f"  {common.human_size(chain.generated.size_bytes)} in {chain.generated.seconds:.0f} s"
                        )
                        results.append(chain.run(args.repeat))
            facts.append(("load average at end", " ".join(f"{x:.2f}" for x in os.getloadavg())))
        ok = True
    finally:
        common.remove_workdir(workdir, ok, args.keep_logs)
    text = report.render(argv, facts, results, restore_jobs())
    print("\n" + text)
    if not args.no_results:
        print(f"results written to {common.write_results(text, args.results, 'chain', sizes)}")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--size-mb", type=int, nargs="+", default=[256, 1024], help="database sizes (default: 256 1024)"
    )
    p.add_argument(
        "--engines", default="postgresql,mysql", help="comma-separated (default: postgresql,mysql)"
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="chains of each way, alternating; tables show the median"
    )
    p.add_argument("--work-dir", type=Path, help="where moto spools objects (default: system temp)")
    p.add_argument("--durable", action="store_true", help="the servers' durability settings on")
    p.add_argument("--results", type=Path, help="results file (default: bench/results/chain-*.md)")
    p.add_argument("--no-results", action="store_true", help="print the results; write no file")
    p.add_argument("--keep-logs", action="store_true", help="keep the commands' output in the work dir")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
