"""``hook:<command>`` steps: post-restore work on the live database, run without a shell.

A hook learns about its run through ``DATAFERRY_*`` variables and gets only what tools need to run
(``streams.child_environment``): never a database password or a store key, unless its job names the
variable in ``hook_env``. Its output is logged with every secret the configuration names replaced
by ``***``, in case a hook prints one anyway."""

from __future__ import annotations

import os
import re
import shlex
import subprocess

from dataferry.config import secret_values
from dataferry.environ import child_environment
from dataferry.errors import ConfigError, FerryError, HookFailed, NotReady
from dataferry.jobs.context import RunContext
from dataferry.jobs.runs import StepRecord


def run_hook(ctx: RunContext, step: StepRecord) -> None:
    command = step.step.split(":", 1)[1]
    context = hook_environment(ctx)
    argv = [expand_dataferry_vars(arg, context) for arg in shlex.split(command)]
    if not argv:
        raise ConfigError(f"job {ctx.name}: step {step.index} has an empty hook command")
    passed = {name: os.environ[name] for name in ctx.job.hook_env if name in os.environ}
    env = child_environment({**passed, **context})
    secrets = secret_values(ctx.cfg, tuple(ctx.job.hook_env)) + _salts(ctx)
    cwd = ctx.cfg.path.parent if ctx.cfg.path else None
    try:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
    except OSError as exc:
        raise NotReady(
            f"job {ctx.name}: hook {argv[0]!r} cannot be started: {exc.strerror}",
            hint="check the command in the job's steps and the PATH",
        ) from None
    try:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = scrub(raw.decode("utf-8", "replace").rstrip(), secrets)
            ctx.reporter.info(f"hook: {line}", job=ctx.name, step=step.index)
        code = proc.wait()
    finally:
        _stop_process(proc)
    step.detail = f"exit {code}"
    if code != 0:
        raise HookFailed(
            f"job {ctx.name}: hook {argv[0]!r} (step {step.index}) exited with {code}",
            hint="its output is in the log above; fix it and re-run with "
            f"'dataferry run {ctx.name} --from-step {step.index}'",
        )


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by ``***``."""
    for value in secrets:
        text = text.replace(value, "***")
    return text


def _salts(ctx: RunContext) -> list[str]:
    """The sanitisation salt of the job's database, if it has one and it is set."""
    from dataferry.sanitise import profile_for

    try:
        profile = profile_for(ctx.cfg, ctx.job.database)
    except FerryError:
        return []
    value = os.environ.get(profile.salt_env) if profile and profile.salt_env else None
    return [value] if value else []


def hook_environment(ctx: RunContext) -> dict[str, str]:
    """What a hook learns about its run (no secrets: the URL carries none)."""
    job = ctx.job
    conn = ctx.cfg.database(job.database).environments.get(job.environment)
    env = {
        "DATAFERRY_JOB": ctx.name,
        "DATAFERRY_RUN_ID": ctx.record.run_id,
        "DATAFERRY_ENVIRONMENT": job.environment,
        "DATAFERRY_DATABASE": job.database,
        "DATAFERRY_DATABASE_URL": conn.url if conn else "",
    }
    artifact = ctx.restored.manifest.id if ctx.restored is not None else ctx.earlier_restored
    if artifact is not None:
        env["DATAFERRY_ARTIFACT"] = artifact
    if ctx.cfg.path is not None:
        env["DATAFERRY_CONFIG"] = str(ctx.cfg.path)
    return env


_VAR_RE = re.compile(r"\$(?:\{(DATAFERRY_[A-Z_]+)\}|(DATAFERRY_[A-Z_]+))")


def expand_dataferry_vars(arg: str, context: dict[str, str]) -> str:
    """Expand ``$DATAFERRY_*`` in a hook argument (hooks run without a shell). Only these are
    expanded, so a secret in the environment can never be put on a command line by accident."""
    return _VAR_RE.sub(lambda m: context.get(m.group(1) or m.group(2), m.group(0)), arg)


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Make sure a hook does not outlive an interrupted run."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
