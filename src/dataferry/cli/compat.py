"""``dataferry legacy`` and ``dataferry import``: the GOV.UK drop-in commands.

``legacy`` takes ``govuk_env_sync.sh``'s own flags unchanged (its arguments are parsed like the
script's getopts, not by click), so a cron line or the operator manual's "re-run a job" command only
needs the program name changed::

    dataferry legacy -f /etc/govuk_env_sync/pull_content_data_admin_production_daily.cfg
"""

from __future__ import annotations

from pathlib import Path

import click

from dataferry.cli._common import Context, say
from dataferry.compat import importer, jobfile, legacy
from dataferry.errors import ConfigError
from dataferry.progress import Reporter, default_reporter

HELP = """
Runs a govuk_env_sync job with dataferry's behaviour: -a push dumps -d from -H into the bucket -u
under -p (the script's own <path>/<YYYY-MM-DDTHH:MM:SS>-<db>.gz, its manifest under _dataferry/, no
pointer); -a pull restores -t (a timestamp or file name), else the newest trusted dump (a pointer
db-backup left is followed), into a shadow database, runs -s on it and swaps it in; -a s3_sync copies
source_bucket to destination_bucket.

Flags apply in order, so flags after -f override the job file. Credentials: $DB_USER (default
aws_db_admin) and $DB_PASSWORD; never on the command line. dataferry's own options:
  --env NAME           this machine's environment (default $GOVUK_ENVIRONMENT)
  --password-env VAR   read the password from VAR instead of DB_PASSWORD
  --layout NAME        govuk-puppet (default: what the script writes and its pulls can read) or
                       govuk (db-backup's <path>/<ts>Z-<db>.gz, a manifest, latest-<db>.txt last)
  --force              allow a pull into a production environment
  --dry-run            check everything and show what would happen; change nothing
See docs/govuk.md."""


def _reporter() -> Reporter:
    ctx = click.get_current_context().find_object(Context)
    return ctx.reporter() if ctx is not None else default_reporter()


@click.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def legacy_cmd(args: tuple[str, ...]) -> None:
    """Run a GOV.UK govuk_env_sync job file unchanged: -f FILE.cfg [-a -D -S -T -d -H -u -p -s -F -t -e].

    Flags apply in order, so flags after -f override the file. dataferry's own options: --env NAME
    (this machine's environment; default $GOVUK_ENVIRONMENT), --password-env VAR (default
    DB_PASSWORD; the user is $DB_USER), --force (restore into a production environment), --dry-run.
    """
    pairs = jobfile.getopts(args)
    if not pairs:
        raise ConfigError(
            f"nothing to run\n{jobfile.USAGE}",
            hint="give a job file: dataferry legacy -f /etc/govuk_env_sync/<job>.cfg (-h for help)",
        )
    if jobfile.wants_help(pairs):
        click.echo(jobfile.USAGE)
        click.echo(HELP)
        return
    longs = jobfile.long_options(pairs)
    opts = legacy.LegacyOptions(
        environment=longs.get("--env"),
        password_env=longs.get("--password-env") or legacy.DEFAULT_PASSWORD_ENV,
        layout=longs.get("--layout") or legacy.LegacyOptions.layout,
        force="--force" in longs,
        dry_run="--dry-run" in longs,
    )
    job = jobfile.resolve(pairs)
    click.echo(legacy.run(job, opts, reporter=_reporter()))


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--env", "environment", help="Job files: the environment they run in. Helm: only this one.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="Write the config here (default: stdout)."
)
@click.option("--force", is_flag=True, help="Overwrite --output if it exists.")
def import_cmd(source: Path, environment: str | None, output: Path | None, force: bool) -> None:
    """Turn a directory of GOV.UK .cfg job files, or db-backup Helm values, into a dataferry config.

    What could not be translated is printed on stderr, one line each. The sanitisation profiles
    that run GOV.UK's transformation scripts (and, from Helm values, the scripts themselves and one
    kubernetes/ENV-values.yaml per environment for 'render kubernetes -f') are written beside --output.
    """
    result = importer.import_path(source, environment)
    text = importer.render(result)
    if output is None:
        click.echo(text, nl=False)
    else:
        if output.exists() and not force:
            raise ConfigError(
                f"{output} exists", hint="choose another --output, or add --force to overwrite it"
            )
        output.write_text(text, encoding="utf-8")
        say(
            f"wrote {output}: {len(result.environments)} environments, {len(result.databases)} "
            f"databases, {len(result.jobs)} jobs",
            "info",
            bare=True,
        )
        for line in importer.write_profiles(result, output.parent, force=force):
            say(line, "info", bare=True)
    if output is None and result.profiles:
        say(
            f"not written (no -o): sanitisation profiles {', '.join(sorted(result.profiles))}; a job that "
            "needs one refuses to run (exit 2) until it exists: import again with -o to write them",
            "warn",
            bare=True,
        )
    if output is None and result.files:
        say(f"not written (no -o): {', '.join(sorted(result.files))}", "warn", bare=True)
    for line in result.untranslated:
        say(f"not translated: {line}", "warn", bare=True)
    for line in result.settings:
        say(f"setting: {line}", "info", bare=True)
