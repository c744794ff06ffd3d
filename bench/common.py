"""Shared machinery of the benchmarks in bench/pg and bench/mysql.

* Throwaway servers come from ``tests/servers.py`` (the same code the test fixtures use), tuned
  afterwards with production-like settings by each benchmark.
* Every measured command runs in a fresh child process. Wall time is ``time.monotonic`` around it,
  CPU time is the whole tree's (``os.wait4``).
* Peak RSS: raw pipelines run under ``/usr/bin/time -f %M`` (the largest member's peak). dataferry
  runs through :func:`ferry_main` (this file run as a script imports ``dataferry.cli`` and runs the
  command in its own process, then writes its own ``VmHWM``), so its Python process is measured
  apart from the tools it spawns, whose peaks are sampled from /proc. See "measuring" below for
  why ``wait4``'s ``ru_maxrss`` cannot be used.

Only the standard library is imported at module level, so the wrapper adds nothing to the RSS of
the dataferry process it measures.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PYTHON = REPO / ".venv" / "bin" / "python"
MOTO_SERVER = REPO / ".venv" / "bin" / "moto_server"
TIME = "/usr/bin/time"  # GNU time (Debian package "time"), not the shell keyword

# Environment variable names the generated config points at; the values never reach argv or files.
PASSWORD_ENV = "BENCH_DB_PASSWORD"
S3_KEY_ENV = "BENCH_S3_ACCESS_KEY_ID"
S3_SECRET_ENV = "BENCH_S3_SECRET_ACCESS_KEY"

# Client variables that would silently redirect the tools if they leaked in from the shell.
_CLIENT_ENV_PREFIXES = ("PG", "MYSQL", "MARIADB", "AWS_", "DATAFERRY_")

MiB = 1024 * 1024


def import_servers() -> Any:
    """Import ``tests/servers.py`` (the test fixtures' throwaway servers) as a module."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("servers")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """``os.environ`` without PG*/MYSQL*/MARIADB*/AWS_*/DATAFERRY_* variables, plus ``extra``.

    Without ``PYTHONDONTWRITEBYTECODE`` too, so that a checkout ``compile_dataferry`` did not
    compile caches its bytecode on the first run rather than compiling it on every run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


# -- realistic text --------------------------------------------------------------------------------


# Prose is drawn from this vocabulary, most frequent words first, with a skewed frequency like real
# text: word i of N is picked by floor(N * random() ** WORD_SKEW). Random words compress ~3.4x with
# zstd -3, like real prose; with the boilerplate, markup, jsonb keys and timestamps around them a
# whole dump compresses about 4x. (md5 filler compresses ~2x and pgbench's blank filler ~100x:
# neither says anything about real throughput.)
def _words(text: str) -> tuple[str, ...]:
    """A paragraph of words as a tuple (more readable here than hundreds of string literals)."""
    return tuple(text.split())


_FUNCTION_WORDS = _words(
    "the of and to a in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if will more no "
    "out so said what up its about into than them can only other new some could time these two may"
)
_CONTENT_WORDS = _words(
    "government service public guidance policy department local council health education school "
    "tax business benefit housing transport road rail travel border visa application form payment "
    "licence register record report review consultation response statistics data evidence research "
    "people family children parents students workers employers pension income support care hospital "
    "doctor patient court justice police crime law regulation rule standard safety environment water "
    "energy climate carbon farming food animal land planning building construction development city "
    "town village region country national international trade export import customs company charity "
    "community volunteer election vote parliament minister secretary committee inquiry budget spending "
    "investment grant fund contract procurement supplier digital online website account identity "
    "security privacy information access request complaint appeal decision notice deadline update "
    "change publish draft final version document page section chapter annex table figure summary "
    "introduction conclusion recommendation outcome impact assessment risk cost benefit value quality "
    "performance target progress year month week day morning evening january february march april "
    "june july august september october november december first second third new existing current "
    "previous future important significant available required additional specific general particular "
    "clear simple detailed recent early late high low large small long short full free open closed "
    "must should might also however therefore because although while during after before between "
    "across within without under over through including following according provide apply check "
    "find make take give help keep start stop use need want know see show tell ask work run pay "
    "claim submit receive send contact call visit meet manage protect improve reduce increase"
)
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(_FUNCTION_WORDS + _CONTENT_WORDS))
WORD_SKEW = 2.0
FIRST_NAMES = _words(
    "james mary robert patricia john jennifer michael linda david elizabeth william barbara richard "
    "susan joseph jessica thomas sarah charles karen amina oliver olivia george amelia harry isla "
    "jack ava noah mia leo freya arthur ivy muhammad grace oscar lily archie rosie priya rahul "
    "chen wei fatima omar sofia lucas emma hugo"
)
LAST_NAMES = _words(
    "smith jones williams taylor brown davies evans wilson thomas johnson roberts robinson thompson "
    "wright walker white edwards hughes green hall lewis harris clarke patel jackson wood turner "
    "martin cooper hill ward morris moore clark lee king baker harrison morgan allen james scott "
    "phillips watson davis parker price bennett young griffiths mitchell kelly cook carter "
    "richardson bailey collins bell shaw murphy miller cox richards khan marshall anderson simpson "
    "ellis adams singh begum wilkinson foster chapman powell webb rogers gray mason ali hunt"
)
EMAIL_DOMAINS = (
    "example.com",
    "example.org",
    "mail.example.net",
    "digital.example.gov.uk",
    "example.co.uk",
)
LOCALES = ("en", "cy", "fr", "de", "es", "pl", "ur", "zh")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "curl/8.5.0",
)
EVENT_KINDS = ("view", "edit", "publish", "unpublish", "comment", "share", "download", "login")


def sql_string(value: str) -> str:
    """A SQL string literal (standard quoting; our vocabulary has no backslashes)."""
    return "'" + value.replace("'", "''") + "'"


# -- measuring -------------------------------------------------------------------------------------
#
# Peak RSS needs care. Linux charges a process that calls exec() with the peak RSS of the memory
# image it replaces; a child of Python's subprocess is vforked, so that image is the *parent's*.
# ``wait4``/``RUSAGE_CHILDREN`` therefore report at least the RSS of whoever spawned the tool: the
# harness for raw pipelines, dataferry itself for pg_dump and friends. So:
# * raw pipelines run under ``/usr/bin/time -f %M`` (it forks from a ~2 MB image): exact, the peak
#   of the largest pipeline member;
# * the dataferry process reports its own ``VmHWM`` (from /proc/self/status) when it exits: exact;
# * the tools dataferry runs are sampled: every 50 ms the harness reads ``VmHWM`` (a high-water mark,
#   so only growth in a tool's last 50 ms could be missed) of every descendant process.

SAMPLE_SECONDS = 0.05


@dataclass
class Measurement:
    """One measured command: wall time, CPU (whole tree), the largest tool's peak RSS and, for
    dataferry, its own Python process's peak RSS."""

    label: str
    seconds: float
    cpu_seconds: float
    tools_rss_kib: int
    tools_rss_name: str = ""
    ferry_rss_kib: int | None = None
    command: str = ""
    s3_cpu_seconds: float = 0.0  # CPU the moto S3 server used meanwhile (it shares the machine)


@dataclass
class Series:
    """Repeated measurements of one command; the median time is what the tables show."""

    label: str
    runs: list[Measurement] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Median wall time."""
        return statistics.median(m.seconds for m in self.runs)

    @property
    def cpu_seconds(self) -> float:
        """Median CPU time (user + system) of the whole process tree."""
        return statistics.median(m.cpu_seconds for m in self.runs)

    @property
    def s3_cpu_seconds(self) -> float:
        """Median CPU time the moto S3 server used during the runs."""
        return statistics.median(m.s3_cpu_seconds for m in self.runs)

    @property
    def ferry_rss_kib(self) -> int | None:
        """Largest dataferry-process peak RSS over the runs (None for raw tools)."""
        values = [m.ferry_rss_kib for m in self.runs if m.ferry_rss_kib is not None]
        return max(values) if values else None

    @property
    def tools(self) -> Measurement:
        """The run whose largest tool was largest."""
        return max(self.runs, key=lambda m: m.tools_rss_kib)

    @property
    def command(self) -> str:
        """The command as run (the same for every repetition)."""
        return self.runs[0].command


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far; 0 without one."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reaped_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` and of the children it has reaped (a PostgreSQL postmaster and
    its exited backends): utime, stime, cutime and cstime."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def idle_cpu_seconds() -> float:
    """CPU seconds the machine's CPUs have spent idle or waiting for I/O so far (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(fields[3]) + int(fields[4])) / os.sysconf("SC_CLK_TCK")


def timed_run(
    argv: Sequence[str], env: Mapping[str, str], server_cpu: Callable[[], float], exit_wait: float = 0.0
) -> dict[str, float]:
    """Run ``argv`` to its end for an A/B: wall seconds, its process tree's CPU seconds
    (``os.wait4``), the server's CPU seconds meanwhile (``server_cpu``, read ``exit_wait`` seconds
    after the end so that exited backends are counted), the CPU seconds the machine left idle (a
    CPU idle while a restore runs is time a better schedule could use) and the load at the start."""
    load = os.getloadavg()[0]
    idle0 = idle_cpu_seconds()
    cpu0, t0 = server_cpu(), time.monotonic()
    proc = subprocess.Popen(list(argv), env=dict(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    idle = idle_cpu_seconds() - idle0
    time.sleep(exit_wait)
    if status != 0:
        raise CommandFailed(f"{list(argv)[:4]} failed: {err[-500:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "server": server_cpu() - cpu0,
        "idle": idle,
        "load": load,
    }


def ab_tables(
    label: Mapping[str, str], runs: Mapping[str, list[dict[str, float]]], speed_up: bool
) -> list[str]:
    """The Markdown tables of an A/B of ``timed_run`` measurements: every run, then the medians
    with each side's ratio to ``raw`` (``speed_up``: raw / side, else side / raw)."""
    lines = [
        "| run | round | wall s | process tree CPU s | server CPU s | CPU s left idle | load avg at start |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for code, measured in runs.items():
        lines += [
            f"| {label[code]} | {n} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['server']:.2f} | {m['idle']:.2f} "
            f"| {m['load']:.1f} |"
            for n, m in enumerate(measured, 1)
        ]
    med = {
        code: {k: statistics.median(m[k] for m in measured) for k in ("wall", "cpu", "server", "idle")}
        for code, measured in runs.items()
    }
    raw = med["raw"]["wall"]
    lines += [
        "",
        f"| median | wall s | {'speed-up over raw' if speed_up else 'vs raw'} | process tree + server CPU s "
        "| CPU s left idle |",
        "| --- | --- | --- | --- | --- |",
    ]
    for code, m in med.items():
        ratio = raw / m["wall"] if speed_up else m["wall"] / raw
        lines.append(
            f"| {label[code]} | {m['wall']:.2f} | {ratio:.2f}x | {m['cpu'] + m['server']:.2f} | {m['idle']:.2f} |"
        )
    return lines


class CommandFailed(RuntimeError):
    """A measured command exited non-zero; the message carries the tail of its output."""


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no output>"


def _status(pid: int) -> tuple[str, int]:
    """(Name, VmHWM in KiB) of a process, or ("", 0) once it is gone."""
    name, hwm = "", 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("Name:"):
                name = line.split()[1]
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
                break
    return name, hwm


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    return out


class TreeSampler:
    """Samples the peak RSS (VmHWM) of every descendant of ``root`` until stopped."""

    def __init__(self, root: int) -> None:
        self.root = root
        # A child caught between fork and exec still shares the root's memory (and name): skip it.
        self.root_name = _status(root)[0]
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            todo = _children(self.root)
            while todo:
                pid = todo.pop()
                name, hwm = _status(pid)
                if hwm and name != self.root_name and hwm >= self.peaks.get(pid, ("", 0))[1]:
                    self.peaks[pid] = (name, hwm)
                todo += _children(pid)

    def stop(self) -> tuple[str, int]:
        """Stop sampling; return the (name, peak KiB) of the largest descendant."""
        self._stop.set()
        self._thread.join()
        return max(self.peaks.values(), key=lambda p: p[1], default=("", 0))


def _run_measured(
    argv: Sequence[str], env: Mapping[str, str], log: Path, *, sample: bool = False
) -> tuple[float, float, tuple[str, int]]:
    """Run ``argv`` to completion; return wall time, CPU time of the tree, and (when ``sample``)
    the largest descendant's sampled peak RSS."""
    with log.open("ab") as out:
        out.write(f"\n$ {shlex.join(argv)}\n".encode())
        out.flush()
        start = time.monotonic()
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        sampler = TreeSampler(proc.pid) if sample else None
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - start
    largest = sampler.stop() if sampler else ("", 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise CommandFailed(f"{shlex.join(argv)} exited {proc.returncode}:\n{_log_tail(log)}")
    return seconds, usage.ru_utime + usage.ru_stime, largest


def _scratch_file(prefix: str) -> Path:
    with tempfile.NamedTemporaryFile(prefix=prefix, delete=False) as tmp:
        return Path(tmp.name)


def measure_shell(label: str, pipeline: str, env: Mapping[str, str], log: Path) -> Measurement:
    """Measure a raw shell pipeline (``bash -o pipefail``: any failing member fails it)."""
    report = _scratch_file("bench-time-")
    try:
        argv = [TIME, "-f", "%M", "-o", str(report), "bash", "-o", "pipefail", "-c", pipeline]
        seconds, cpu, _ = _run_measured(argv, env, log)
        peak = int(report.read_text().split()[-1])
    finally:
        report.unlink(missing_ok=True)
    return Measurement(label, seconds, cpu, tools_rss_kib=peak, command=pipeline)


def measure_ferry(label: str, args: Sequence[str], env: Mapping[str, str], log: Path) -> Measurement:
    """Measure one ``dataferry`` command: its own process's peak RSS, and its tools' (sampled)."""
    report = _scratch_file("bench-ferry-")
    try:
        argv = [str(PYTHON), str(Path(__file__).resolve()), "--rss-out", str(report), "--", *args]
        seconds, cpu, (tool, tool_peak) = _run_measured(argv, env, log, sample=True)
        own = int(report.read_text())
    finally:
        report.unlink(missing_ok=True)
    return Measurement(
        label,
        seconds,
        cpu,
        tools_rss_kib=tool_peak,
        tools_rss_name=tool,
        ferry_rss_kib=own,
        command="dataferry " + shlex.join(args),
    )


def ferry_main(argv: list[str]) -> int:
    """``common.py --rss-out FILE -- ARGS``: run ``dataferry ARGS`` in this process, then write
    this process's peak RSS (VmHWM, KiB) to FILE, even when the command failed."""
    if len(argv) < 3 or argv[0] != "--rss-out" or argv[2] != "--":
        print("usage: common.py --rss-out FILE -- DATAFERRY-ARGS...", file=sys.stderr)
        return 2
    out, args = Path(argv[1]), argv[3:]
    from dataferry import cli

    if os.environ.get("BENCH_NO_HEAP"):  # the A/B of dataferry/heap.py (bench/README.md, "Memory")
        from dataferry import heap

        heap.release_large_buffers = lambda: False  # type: ignore[method-assign]

    try:
        code = cli.run(args)
    finally:
        out.write_text(str(_status(os.getpid())[1]))
    cli.exit_now(code)  # as the dataferry script ends


class Runner:
    """Measures the commands of one benchmark size in order (raw tools first, then dataferry),
    ``repeat`` times each, and keeps them as :class:`Series` by label, in the order run."""

    def __init__(
        self,
        *,
        config: Path,
        log: Path,
        repeat: int,
        tool_env: Mapping[str, str],
        ferry_env: Mapping[str, str],
        quiet: bool = True,
        settle: Callable[[], None] | None = None,
        s3_pid: int = 0,
    ) -> None:
        self.config = config
        self.settle = settle
        self.s3_pid = s3_pid
        self.quiet = quiet
        self.log = log
        self.repeat = repeat
        self.tool_env = dict(tool_env)
        self.ferry_env = dict(ferry_env)
        self.series: dict[str, Series] = {}

    def _record(
        self,
        label: str,
        measure: Callable[[], Measurement],
        before: Callable[[], None] | None,
        after: Callable[[], None] | None,
    ) -> Series:
        series = self.series.setdefault(label, Series(label))
        for _ in range(self.repeat):
            if before:
                before()
            if self.settle:
                self.settle()  # every measurement starts from a quiet server
            # ... and a clean page cache: files earlier commands wrote (dump files, the server's
            # checkpointed pages) are written to disk now, not by the kernel during this command.
            os.sync()
            s3_before = process_cpu_seconds(self.s3_pid)
            run = measure()
            run.s3_cpu_seconds = process_cpu_seconds(self.s3_pid) - s3_before
            series.runs.append(run)
            if after:
                after()
        print(f"  {summary(series)}", flush=True)
        return series

    def raw(
        self,
        label: str,
        pipeline: str,
        *,
        before: Callable[[], None] | None = None,
        after: Callable[[], None] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Series:
        """Measure a raw shell pipeline; ``before``/``after`` run untimed around each repetition;
        ``env`` adds variables (the aws CLI's credentials) to the tools' environment."""
        tool_env = {**self.tool_env, **(env or {})}
        return self._record(label, lambda: measure_shell(label, pipeline, tool_env, self.log), before, after)

    def ferry(self, label: str, *args: str, after: Callable[[], None] | None = None) -> Series:
        """Measure ``dataferry --config CONFIG [-q] ARGS``; ``after`` runs untimed after each."""
        # -q: progress output costs a little; without it the log shows each step's time.
        argv = ["--config", str(self.config), *(["-q"] if self.quiet else []), *args]
        return self._record(label, lambda: measure_ferry(label, argv, self.ferry_env, self.log), None, after)


# -- moto S3 ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Endpoint:
    """A moto S3 server in its own process, and a bucket in it."""

    endpoint_url: str
    bucket: str
    access_key: str = "benchmark"
    secret_key: str = "benchmark-secret"
    region: str = "us-east-1"
    pid: int = 0  # moto_server's process, whose CPU time the runner records


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_s3(workdir: Path, log: Path) -> Iterator[S3Endpoint]:
    """Start ``moto_server`` in a separate process (not a thread of this harness, so its CPU and
    memory are not ours) and create a bucket. Objects larger than ~5 MB spool to temp files under
    ``workdir``; multipart uploads are assembled by copying their parts."""
    port = _free_port()
    tmp = workdir / "moto-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            env=clean_env({"TMPDIR": str(tmp)}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start:\n{_log_tail(log)}") from None
                time.sleep(0.1)
        endpoint = S3Endpoint(endpoint_url=f"http://127.0.0.1:{port}", bucket="dataferry-bench", pid=proc.pid)
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint.endpoint_url,
            aws_access_key_id=endpoint.access_key,
            aws_secret_access_key=endpoint.secret_key,
            region_name=endpoint.region,
        ).create_bucket(Bucket=endpoint.bucket)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aws_cli(workdir: Path) -> Path | None:
    """The aws CLI, for raw pipelines to and from S3: the one on PATH, or awscli from PyPI
    installed into its own virtualenv in ``workdir`` (not dataferry's .venv: awscli pins its own
    botocore). None, with a message, when neither is possible (no network)."""
    found = shutil.which("aws")
    if found:
        return Path(found)
    venv = workdir / "awscli-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "awscli"],
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        print(f"no aws CLI, so no raw pipelines to S3: {exc.stderr.decode(errors='replace')[-300:]}")
        return None
    return venv / "bin" / "aws"


def aws_env(s3: S3Endpoint, *, whole_objects: Path | None = None) -> dict[str, str]:
    """The aws CLI's credentials and region for the moto endpoint.

    With ``whole_objects`` (a config file written there), downloads are one GET per object, as
    dataferry's are: by default the CLI downloads large objects in ranged parts, which moto
    serves very slowly (one run: 4.3 s and 3.6 s of moto's CPU for 210 MB), a handicap that
    measures moto, not the pipeline.
    """
    env = {
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "AWS_DEFAULT_REGION": s3.region,
    }
    if whole_objects is not None:
        whole_objects.write_text("[default]\ns3 =\n  multipart_threshold = 64GB\n")
        env["AWS_CONFIG_FILE"] = str(whole_objects)
    return env


# -- dataferry configuration -----------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    engine: str,
    source_url: str,
    target_url: str,
    workdir: Path,
    s3: S3Endpoint,
    s3_prefix: str,
) -> Path:
    """Write the benchmark's dataferry config: database ``bench`` in environments ``local`` and
    ``s3`` (the source database, backed up to a local directory or to S3) and ``target`` (the
    restore target). No secret is written: passwords and keys are named by env var."""
    spool = workdir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    s3_store = (
        f'{{ url = "s3://{s3.bucket}/{s3_prefix}", endpoint_url = "{s3.endpoint_url}", '
        f'region = "{s3.region}", access_key_id_env = "{S3_KEY_ENV}", '
        f'secret_access_key_env = "{S3_SECRET_ENV}" }}'
    )
    path.write_text(
        f"""# generated by bench/ for one benchmark run
[settings]
compression_level = 3
spool_dir = "{spool}"

[environments.local]
store = "{workdir / "store-local"}"
[environments.s3]
store = {s3_store}
[environments.target]
store = "{workdir / "store-target"}"

[databases.bench]
engine = "{engine}"
[databases.bench.environments]
local = {{ url = "{source_url}", password_env = "{PASSWORD_ENV}" }}
s3 = {{ url = "{source_url}", password_env = "{PASSWORD_ENV}" }}
target = {{ url = "{target_url}", password_env = "{PASSWORD_ENV}" }}
"""
    )
    return path


def ferry_env(password: str, s3: S3Endpoint) -> dict[str, str]:
    """The environment dataferry runs with: secrets by env var, nothing inherited that could
    redirect it (PG*, MYSQL*, AWS_*)."""
    return clean_env(
        {
            PASSWORD_ENV: password,
            S3_KEY_ENV: s3.access_key,
            S3_SECRET_ENV: s3.secret_key,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )


# -- reporting -------------------------------------------------------------------------------------


def mib(kib: int | None) -> str:
    """KiB as a MiB string for tables."""
    return "-" if kib is None else f"{kib / 1024:.0f}"


def human_size(n: int) -> str:
    """Bytes as MiB with one decimal."""
    return f"{n / MiB:.1f} MiB"


def largest_artifact(objects: Iterable[tuple[str, int]]) -> int:
    """Bytes of the largest artifact among stored ``(key, size)`` objects. A per-table artifact's
    objects share a directory named ``<id>.<format>`` and are summed; any other object (one per
    artifact, or GOV.UK's) is an artifact of its own. A store that ran ``--repeat`` rounds holds
    one artifact per round: this is one of them, not their sum."""
    sizes: dict[str, int] = {}
    for key, size in objects:
        parent = key.rpartition("/")[0]
        artifact = parent if "." in parent.rpartition("/")[2] else key
        sizes[artifact] = sizes.get(artifact, 0) + size
    return max(sizes.values(), default=0)


def ratio(a: float, b: float) -> str:
    """``a / b`` formatted as a ratio."""
    return f"{a / b:.2f}x" if b > 0 else "-"


def _command_version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def machine_facts(workdir: Path, extra_versions: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """What the results depend on: CPUs, memory, the disk under the work directory, versions."""
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    usage = shutil.disk_usage(workdir)
    df_lines = subprocess.run(
        ["df", "--output=source,fstype", str(workdir)], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    device = df_lines[-1].split() if len(df_lines) > 1 else ["?", "?"]
    facts = [
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpus", f"{os.cpu_count()} x {cpu}"),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("memory", f"{mem_kib / 1024 / 1024:.1f} GiB"),
        ("work dir disk", f"{device[0]} ({device[-1]}), {usage.free / 1024**3:.0f} GiB free"),
        ("kernel", platform.release()),
        ("python", platform.python_version()),
        ("dataferry", _command_version([str(PYTHON), "-m", "dataferry", "--version"])),
        ("zstd", _command_version(["zstd", "--version"])),
        ("moto", _command_version([str(PYTHON), "-c", "import moto; print(moto.__version__)"])),
    ]
    facts += [(name, _command_version(argv)) for name, argv in extra_versions.items()]
    return facts


TABLE_HEADER = (
    "step",
    "wall s (median, range)",
    "dataferry vs raw",
    "CPU s (process tree; + moto's own for S3)",
    "dataferry process peak RSS MiB",
    "largest tool peak RSS MiB",
)


def table_row(series: Series, versus: str) -> list[str]:
    """One row of a results table (see TABLE_HEADER)."""
    tools = series.tools
    name = f" ({tools.tools_rss_name})" if tools.tools_rss_name else ""
    times = [m.seconds for m in series.runs]
    spread = f" ({min(times):.2f}..{max(times):.2f})" if len(times) > 1 else ""
    return [
        series.label,
        f"{series.seconds:.2f}{spread}",
        versus,
        f"{series.cpu_seconds:.1f}" + (f" + {series.s3_cpu_seconds:.1f} moto" if is_s3(series) else ""),
        mib(series.ferry_rss_kib),
        mib(tools.tools_rss_kib) + name,
    ]


def is_s3(series: Series) -> bool:
    """Whether the command reads or writes the moto S3 store."""
    return "S3" in series.label


#: Why the time targets judge the local store only (printed under every report's targets).
S3_NOT_JUDGED = (
    "S3 is moto's server on the same two CPUs, handling every part in Python: its times measure "
    "moto as much as dataferry (moto's own CPU time is in the table), so the time targets judge "
    "the local store; memory is judged for every command"
)


def judged(series: Sequence[Series]) -> tuple[list[Series], list[Series]]:
    """The commands a time target judges (local store) and those it only reports (S3 through
    moto, which runs on the same CPUs: its own CPU time is in the table)."""
    return [x for x in series if not is_s3(x)], [x for x in series if is_s3(x)]


def summary(series: Series) -> str:
    """A one-line progress report of a finished measurement."""
    ferry = f", dataferry {mib(series.ferry_rss_kib)} MiB" if series.ferry_rss_kib is not None else ""
    tools = series.tools
    return (
        f"{series.label}: {series.seconds:.2f} s, CPU {series.cpu_seconds:.1f} s, peak RSS: "
        f"tools {mib(tools.tools_rss_kib)} MiB {tools.tools_rss_name}{ferry}"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (``|`` inside cells, as in shell pipelines, is escaped)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join(" --- " for _ in header) + "|", *map(line, rows)])


def uncompressed_size(path: Path) -> int:
    """Bytes in a zstd file once decompressed (streamed: ``zstd -dc | wc -c``)."""
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"zstd -dc -q {shlex.quote(str(path))} | wc -c"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def verdict(ok: bool) -> str:
    """A target's verdict, bold."""
    return "**pass**" if ok else "**FAIL**"


def flatness(results: Sequence[tuple[int, Mapping[str, Series]]]) -> str:
    """A table of dataferry's own peak RSS per command at the smallest and largest size."""
    if len(results) < 2:
        return "Only one size was run: nothing to say about how RSS changes with size.\n"
    (small_mb, small), (large_mb, large) = results[0], results[-1]
    rows = []
    for label, series in large.items():
        if series.ferry_rss_kib is None or label not in small:
            continue
        a, b = small[label].ferry_rss_kib or 0, series.ferry_rss_kib
        rows.append([label, mib(a), mib(b), f"{(b - a) / 1024:+.0f}"])
    header = ["dataferry command", f"{small_mb} MB: RSS MiB", f"{large_mb} MB: RSS MiB", "change MiB"]
    return markdown_table(header, rows) + "\n"


def commands_section(series: Mapping[str, Series]) -> str:
    """The exact commands, as run."""
    lines = ["```sh"]
    for s in series.values():
        lines += [f"# {s.label}", s.command]
    return "\n".join([*lines, "```"]) + "\n"


def max_ferry_rss(series: Mapping[str, Series]) -> int:
    """The largest dataferry-process peak RSS (KiB) over all commands."""
    return max((s.ferry_rss_kib or 0) for s in series.values())


def write_results(text: str, path: Path | None, engine: str, sizes: Sequence[int]) -> Path:
    """Write the results file (default: bench/results/<engine>-<sizes>-<time>.md)."""
    target = path or results_path(engine, sizes)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def results_path(engine: str, sizes: Sequence[int]) -> Path:
    """``bench/results/<engine>-<sizes>-<UTC time>.md``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%MZ")
    return RESULTS_DIR / f"{engine}-{'-'.join(f'{s}mb' for s in sizes)}-{stamp}.md"


def ensure_tools(packages: Mapping[str, str]) -> None:
    """Install the Debian packages (``{package: program}``) whose program is missing, with
    apt-get (through sudo when not root); fail early if that is not possible."""
    missing = [pkg for pkg, program in packages.items() if shutil.which(program) is None]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if (sudo and shutil.which("sudo") is None) or shutil.which("apt-get") is None:
        raise SystemExit(f"missing Debian packages: {' '.join(missing)}; install them and run again")
    print(f"installing Debian packages: {' '.join(missing)}")
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def compile_dataferry(*srcs: str | Path) -> None:
    """Write dataferry's bytecode before measuring, as ``pip install`` does for a wheel: this
    checkout's ``src``, or each of ``srcs`` (the A/B scripts' two checkouts).

    The editable install in ``.venv`` compiles sources on first import and caches the result,
    unless ``PYTHONDONTWRITEBYTECODE`` is set (it is on some CI machines): then every dataferry
    command compiled all of dataferry again, 30-40 ms that an installed dataferry never pays.
    """
    import compileall

    for src in srcs or (REPO / "src",):
        compileall.compile_dir(str(src), quiet=1)


def remove_workdir(workdir: Path, ok: bool, keep_logs: bool = False) -> None:
    """Remove the work directory; after a failure, or with ``keep_logs``, keep its logs and
    configs (small) for diagnosis."""
    if ok and not keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
        return
    for path in sorted(workdir.rglob("*"), reverse=True):
        if path.is_file() and path.suffix not in (".log", ".toml"):
            path.unlink(missing_ok=True)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    print(f"{'logs' if ok else 'failed: logs'} kept in {workdir}", file=sys.stderr)


def workdir_for(base: Path | None) -> Path:
    """A fresh work directory (dumps, stores, spool) under ``base`` or the system temp dir."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="dataferry-bench-", dir=base))


if __name__ == "__main__":
    sys.exit(ferry_main(sys.argv[1:]))
