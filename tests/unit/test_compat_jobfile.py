"""GOV.UK job files and govuk_env_sync.sh flags: parsed without running anything, applied in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataferry.compat.jobfile import (
    FLAG_KEYS,
    getopts,
    long_options,
    parse_job_file,
    read_job_file,
    resolve,
    wants_help,
)
from dataferry.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "govuk"
ALL_CFG = sorted(FIXTURES.glob("etc-*/*.cfg"))


def _write(tmp_path: Path, text: str, name: str = "job.cfg") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- job files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_CFG, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_fixture_job_file_reads_with_known_keys_only(path: Path) -> None:
    job = read_job_file(path)
    assert job.values["action"] in ("push", "pull", "s3_sync")
    assert job.warnings == []


def test_values_as_the_puppet_template_renders_them() -> None:
    job = read_job_file(FIXTURES / "etc-staging" / "pull_content_data_admin_production_daily.cfg")
    assert job.values == {
        "action": "pull",
        "dbms": "postgresql",
        "storagebackend": "s3",
        "temppath": "/tmp/content_data_admin_production",
        "database": "content_data_admin_production",
        "database_hostname": "content-data-admin-postgres",
        "url": "govuk-production-database-backups",
        "path": "content-data-admin-postgres",
    }


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ('path="a b"', "a b"),
        ("path='a $b'", "a $b"),
        ("path=plain", "plain"),
        ('path="x" # trailing comment', "x"),
        (r'path="say \"hi\""', 'say "hi"'),
        (r"path=a\ b", "a b"),
        ('export path="exported"', "exported"),
        ('path=""', ""),
        ("path='a'\"b\"c", "abc"),
    ],
)
def test_shell_quoting_is_understood(line: str, value: str) -> None:
    assert parse_job_file(line + "\n", Path("t.cfg")).values["path"] == value


@pytest.mark.parametrize(
    "line",
    [
        'path="$HOME/x"',
        "path=`hostname`",
        "path=${X}",
        'path="$(rm -rf /)"',
        "path=a; rm -rf /",
        'path="open',
    ],
)
def test_expansion_and_shell_code_are_refused_with_the_line(line: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_job_file("# a comment\n\n" + line + "\n", Path("t.cfg"))
    assert "t.cfg:3" in err.value.message


def test_a_line_that_is_not_an_assignment_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"t.cfg:2: not a key"):
        parse_job_file('action="push"\necho hello\n', Path("t.cfg"))


def test_unknown_key_is_reported_and_ignored() -> None:
    job = parse_job_file('action="push"\ncolour="blue"\n', Path("t.cfg"))
    assert "colour" not in job.values
    assert job.warnings == ["t.cfg:2: colour is not a govuk_env_sync setting; ignored"]


def test_a_secret_in_a_job_file_is_ignored_and_never_repeated() -> None:
    job = parse_job_file('action="pull"\ndb_password="hunter2-secret"\n', Path("t.cfg"))
    assert "db_password" not in job.values
    assert len(job.warnings) == 1
    assert "looks like a secret" in job.warnings[0]
    assert "hunter2" not in job.warnings[0]


def test_later_lines_win_like_shell_assignments() -> None:
    job = parse_job_file('path="one"\npath="two"\n', Path("t.cfg"))
    assert job.values["path"] == "two"


def test_missing_job_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        read_job_file(tmp_path / "nope.cfg")


# -- flags -----------------------------------------------------------------------------------------


def test_getopts_forms() -> None:
    assert getopts(["-apush", "-d", "db", "-hD", "mysql"]) == [
        ("a", "push"),
        ("d", "db"),
        ("h", ""),
        ("D", "mysql"),
    ]


def test_every_flag_of_the_original_maps_to_its_job_file_key(tmp_path: Path) -> None:
    sql = _write(tmp_path, "SELECT 1;", "t.sql")
    argv: list[str] = []
    for letter in "aDSTdHupsFte":
        value = {
            "a": "pull",
            "D": "mysql",
            "S": "s3",
            "s": str(sql),
            "F": str(sql),
            "t": "2026-01-05T230501Z",
            "e": "a,b",
        }.get(letter, f"v-{letter}")
        argv += [f"-{letter}", value]
    job = resolve(getopts(argv))
    for letter, key in FLAG_KEYS.items():
        got = getattr(job, key)
        if key == "excluded_tables":
            assert got == ("a", "b")
        elif key == "pre_dump_transformation_sql_file":
            assert got == ""  # pre-dump applies to push only: reported and dropped for a pull
        else:
            assert got, f"-{letter} ({key}) was lost"
    assert any("-F" in w for w in job.warnings)


def test_flags_after_f_override_the_file_and_flags_before_it_are_overridden(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path,
        'action="pull"\ndbms="postgresql"\nstoragebackend="s3"\ndatabase="db"\n'
        'database_hostname="file-host"\nurl="file-bucket"\npath="p"\n',
    )
    job = resolve(getopts(["-u", "flag-bucket-before", "-f", str(cfg), "-H", "flag-host-after"]))
    assert job.url == "file-bucket"
    assert job.database_hostname == "flag-host-after"
    assert job.config_file == cfg
    assert job.title == "job"


def test_e_works_as_a_flag_unlike_the_original() -> None:
    job = resolve(
        getopts(
            [
                "-a",
                "push",
                "-D",
                "mysql",
                "-S",
                "s3",
                "-d",
                "d",
                "-H",
                "h",
                "-u",
                "b",
                "-p",
                "p",
                "-e",
                " t1, t2 ,",
            ]
        )
    )
    assert job.excluded_tables == ("t1", "t2")


def test_t_is_kept_for_pull() -> None:
    job = resolve(
        getopts(
            [
                "-a",
                "pull",
                "-D",
                "postgresql",
                "-S",
                "s3",
                "-d",
                "d",
                "-H",
                "h",
                "-u",
                "b",
                "-p",
                "p",
                "-t",
                "X",
            ]
        )
    )
    assert job.timestamp == "X"


def test_t_on_push_is_reported_and_ignored() -> None:
    job = resolve(
        getopts(
            [
                "-a",
                "push",
                "-D",
                "postgresql",
                "-S",
                "s3",
                "-d",
                "d",
                "-H",
                "h",
                "-u",
                "b",
                "-p",
                "p",
                "-t",
                "X",
            ]
        )
    )
    assert job.timestamp == ""
    assert any("-t" in w for w in job.warnings)


def test_long_options_and_help() -> None:
    pairs = getopts(["--force", "--env=staging", "--password-env", "MY_PW", "-a", "pull", "--dry-run"])
    assert long_options(pairs) == {
        "--force": "",
        "--env": "staging",
        "--password-env": "MY_PW",
        "--dry-run": "",
    }
    assert wants_help(getopts(["-h"]))
    assert wants_help(getopts(["--help"]))
    assert not wants_help(pairs)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], "unknown option -x"),
        (["-a"], "option -a requires a value"),
        (["-a", "push", "stray"], "unexpected argument 'stray'"),
        (["--frce"], "unknown option --frce"),
        (["--force=yes"], "takes no value"),
        (["--env"], "requires a value"),
    ],
)
def test_bad_flags_are_config_errors_not_a_silent_usage(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        getopts(argv)


# -- validation ------------------------------------------------------------------------------------

BASE = ["-D", "postgresql", "-S", "s3", "-d", "d", "-H", "h", "-u", "b", "-p", "p"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (BASE, "no action"),
        (["-a", "fetch", *BASE], "unknown action 'fetch'"),
        (
            ["-a", "pull", "-D", "postgresql"],
            r"needs storagebackend \(-S\), database \(-d\), url \(-u\), path \(-p\)",
        ),
        (["-a", "s3_sync"], "needs source_bucket, destination_bucket"),
        (["-a", "pull", *BASE, "-D", "mongo"], "dbms 'mongo' is not supported yet"),
        (["-a", "pull", *BASE, "-D", "documentdb"], "not supported yet"),
        (["-a", "pull", *BASE, "-D", "elasticsearch"], "not supported yet"),
        (["-a", "pull", *BASE, "-D", "oracle"], "unknown dbms 'oracle'"),
        (
            ["-a", "pull", *BASE, "-S", "elasticsearch"],
            "storage backend 'elasticsearch' is not supported yet",
        ),
        (["-a", "pull", *BASE, "-H", ""], "needs a database host"),
        (["-a", "push", *BASE, "-F", "x.sql"], "mysql only"),
    ],
)
def test_validation_mirrors_the_script_with_clear_messages(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(getopts(argv))


def test_s3_sync_job_file() -> None:
    job = resolve(
        getopts(["-f", str(FIXTURES / "etc-staging" / "s3_sync_content_publisher_from_production_daily.cfg")])
    )
    assert (job.action, job.source_bucket, job.destination_bucket, job.delete) == (
        "s3_sync",
        "govuk-production-content-publisher-activestorage",
        "govuk-staging-content-publisher-activestorage",
        True,
    )


def test_delete_must_be_true_or_false(tmp_path: Path) -> None:
    cfg = _write(tmp_path, 'action="s3_sync"\nsource_bucket="a"\ndestination_bucket="b"\ndelete="rm -rf /"\n')
    with pytest.raises(ConfigError, match="delete must be true or false"):
        resolve(getopts(["-f", str(cfg)]))


def test_transformation_for_the_wrong_action_is_reported_and_dropped() -> None:
    job = resolve(getopts(["-a", "push", *BASE, "-s", "/nowhere.sql"]))
    assert job.transformation_sql_file == ""
    assert any("-s" in w for w in job.warnings)
