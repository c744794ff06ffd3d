"""The configuration file: loading, every problem at once with file:line, and secrets kept out.

Line numbers are never typed in by hand: ``line_of`` finds the offending line in the text, so the
tests check that the loader points at the line a person would fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dataferry.config import Config, DatabaseRef, S3Options, database_ref, find_config_path, load, parse
from dataferry.errors import ConfigError, NotFound, NotReady

VALID = """\
# a production/staging pair
[settings]
compression_level = 5

[environments.production]
store = { url = "s3://prod-backups/db", region = "eu-west-2", sse = "aws:kms", part_size_mib = 32 }
protected = true

[environments.staging]
store = "stores/staging"
requires_sanitised = true
trusted_keys = ["ed25519:iIXazt7wMVICZOkpSd8TirPa+fAPAjJElDrv/dcI144="]

[databases.publishing-api]
engine = "postgresql"
exclude_tables = ["sessions"]
[databases.publishing-api.environments]
production = { url = "postgresql://backup@pub-api-db/publishing_api", password_env = "PROD_PG_PASSWORD" }
staging = { url = "postgresql://backup@pub-api-db.staging/publishing_api", password_env = "STAGING_PG_PASSWORD" }

[databases.alerts]
engine = "sqlite"
[databases.alerts.environments]
staging = { url = "sqlite:///data/alerts.db" }
"""

SECRET = "Sup3r-S3cret-Pa55"


def write(tmp_path: Path, text: str, name: str = "dataferry.toml") -> Path:
    """Write a config file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, fragment: str) -> int:
    """1-based number of the only line containing ``fragment``."""
    found = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(found) == 1, f"{fragment!r} is on lines {found}"
    return found[0]


def config_error(tmp_path: Path, text: str) -> ConfigError:
    """Load ``text`` and return the ConfigError it must raise."""
    with pytest.raises(ConfigError) as excinfo:
        load(write(tmp_path, text))
    assert excinfo.value.exit_code == 2
    return excinfo.value


def problems(err: ConfigError) -> list[str]:
    """The listed problems of a validation error, one per line."""
    return [line.strip()[2:] for line in err.message.splitlines()[1:] if line.strip().startswith("- ")]


# -- a valid file --------------------------------------------------------------------------------


def test_valid_file_loads(tmp_path: Path) -> None:
    """Everything in a valid file ends up in the model, and the path is remembered (resolved)."""
    cfg = load(write(tmp_path, VALID))
    assert cfg.path == (tmp_path / "dataferry.toml").resolve()
    assert cfg.settings.compression_level == 5
    prod = cfg.environment("production")
    assert prod.protected is True
    assert prod.store.url == "s3://prod-backups/db"
    assert prod.store.options() == S3Options(
        region="eu-west-2", sse="aws:kms", part_size_mib=32, concurrency=3
    )
    assert prod.store.options().model_dump(exclude_none=True) == {
        "region": "eu-west-2",
        "sse": "aws:kms",
        "part_size_mib": 32,
        "concurrency": 3,
    }
    staging = cfg.environment("staging")
    assert staging.store.url == "stores/staging"
    assert staging.requires_sanitised is True
    api = cfg.database("publishing-api")
    assert api.engine == "postgresql"
    assert api.exclude_tables == ["sessions"]
    assert api.environments["production"].password_env == "PROD_PG_PASSWORD"
    assert cfg.resolve_path("stores/staging") == tmp_path.resolve() / "stores/staging"
    assert cfg.resolve_path("/abs/dir") == Path("/abs/dir")


def test_empty_file_is_a_valid_empty_config(tmp_path: Path) -> None:
    """No sections at all is allowed (a new setup); lookups then say what is known: nothing."""
    cfg = load(write(tmp_path, ""))
    assert cfg.environments == {}
    with pytest.raises(ConfigError) as excinfo:
        cfg.environment("production")
    assert excinfo.value.hint == "known environments: none"


def test_lookups_of_unknown_names(tmp_path: Path) -> None:
    """Unknown environments are ConfigError listing what exists; unknown databases and jobs NotFound
    (exit 4, as the exit-code table says)."""
    cfg = load(write(tmp_path, VALID))
    with pytest.raises(NotFound) as excinfo:
        cfg.database("publishing_api")
    assert excinfo.value.hint == "known databases: alerts, publishing-api"
    assert excinfo.value.exit_code == 4
    with pytest.raises(ConfigError, match="'qa'"):
        cfg.environment("qa")
    with pytest.raises(NotFound) as nf:
        cfg.job("nightly")
    assert nf.value.exit_code == 4


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """--config beats $DATAFERRY_CONFIG, which beats ./dataferry.toml."""
    assert find_config_path(None) == Path("dataferry.toml")
    monkeypatch.setenv("DATAFERRY_CONFIG", "/etc/dataferry/from-env.toml")
    assert find_config_path(None) == Path("/etc/dataferry/from-env.toml")
    assert find_config_path("explicit.toml") == Path("explicit.toml")


# -- problems, all at once, with file:line -------------------------------------------------------


def test_every_field_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    """Three unrelated mistakes: one error listing all three, each at its own line."""
    text = (
        VALID.replace('engine = "postgresql"', 'engine = "postgres"').replace(
            "part_size_mib = 32", "part_size_mib = 1"
        )
        + '\n[databases.other]\nengine = "sqlite"\ncompresion_level = 3\n'
    )
    err = config_error(tmp_path, text)
    found = problems(err)
    assert len(found) == 3, err.message
    assert err.message.startswith(f"{tmp_path / 'dataferry.toml'}: 3 problem(s)")
    expected = {
        "databases.publishing-api.engine": line_of(text, 'engine = "postgres"'),
        "environments.production.store.part_size_mib": line_of(text, "part_size_mib = 1"),
        "databases.other.compresion_level": line_of(text, "compresion_level"),
    }
    for dotted, line in expected.items():
        matching = [p for p in found if f": {dotted}: " in p]
        assert matching, f"{dotted} not reported: {found}"
        assert matching[0].startswith(f"dataferry.toml:{line}: "), matching[0]
    assert any("unknown key" in p for p in found)
    assert err.hint


def test_unknown_keys_are_named_at_their_line(tmp_path: Path) -> None:
    """A misspelt table and a misspelt key are each reported where they are."""
    text = VALID + '\n[enviroments.qa]\nstore = "x"\n'
    text = text.replace("protected = true", "protect = true")
    found = problems(config_error(tmp_path, text))
    assert len(found) == 2, found
    by_key = {p.split(": ")[1]: p for p in found}
    assert by_key["enviroments"].startswith(f"dataferry.toml:{line_of(text, '[enviroments.qa]')}:")
    assert by_key["environments.production.protect"].startswith(
        f"dataferry.toml:{line_of(text, 'protect = true')}:"
    )
    assert all("unknown key" in p for p in found)


def test_reference_problems_are_reported_at_once_with_their_lines(tmp_path: Path) -> None:
    """Connections and jobs naming things that do not exist: all listed, each at its line."""
    text = VALID.replace('staging = { url = "sqlite', 'stagin = { url = "sqlite') + (
        '\n[jobs.nightly]\nenvironment = "stagng"\ndatabase = "publishing-api"\nsteps = ["backup"]\n'
    )
    err = config_error(tmp_path, text)
    found = problems(err)
    assert len(found) == 2, err.message
    conn = [p for p in found if "databases.alerts.environments.stagin" in p]
    job = [p for p in found if "jobs.nightly.environment" in p]
    assert conn and conn[0].startswith(f"dataferry.toml:{line_of(text, 'stagin = {')}: ")
    assert "no such environment" in conn[0]
    job_line = line_of(text, 'environment = "stagng"')
    assert job and job[0].startswith(f"dataferry.toml:{job_line}: ")


def test_invalid_names_are_reported(tmp_path: Path) -> None:
    """Names become keys and file names: no spaces or slashes."""
    text = VALID + '\n[environments."qa env"]\nstore = "x"\n'
    found = problems(config_error(tmp_path, text))
    assert len(found) == 1
    assert found[0].startswith(f"dataferry.toml:{line_of(text, 'qa env')}: environments.qa env: names use")


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    """A syntax error says where it is."""
    text = VALID.replace("protected = true", "protected = yes please")
    err = config_error(tmp_path, text)
    assert "not valid TOML" in err.message
    assert re.search(rf"line {line_of(text, 'yes please')}\b", err.message), err.message


def test_missing_file_is_a_config_error_with_a_hint(tmp_path: Path) -> None:
    """A missing file says how to point at one."""
    with pytest.raises(ConfigError) as excinfo:
        load(tmp_path / "nope.toml")
    assert "nope.toml" in excinfo.value.message
    assert excinfo.value.hint and "--config" in excinfo.value.hint


@pytest.mark.parametrize("content", [b"\xff\xfe[environments]\n", b"[settings]\nx = '\xe9'\n"])
def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    """Binary or Latin-1 content is a ConfigError, not a UnicodeDecodeError traceback."""
    path = tmp_path / "dataferry.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="UTF-8"):
        load(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    """A directory where the file should be is a ConfigError too."""
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path)


# -- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://backup:{SECRET}@db.internal/app",
        f"mysql://root:{SECRET}@db.internal:3306/app",
        f"postgresql://backup@db.internal/app?sslmode=require&password={SECRET}",
        f"mysql://root@db.internal/app?PASSWORD={SECRET}",
    ],
    ids=["pg-userinfo", "mysql-userinfo", "pg-query", "mysql-query-upper"],
)
def test_password_in_url_is_rejected_without_repeating_it(tmp_path: Path, url: str) -> None:
    """A password in a URL (userinfo or query) is refused, and the error never repeats it."""
    text = VALID.replace("postgresql://backup@pub-api-db/publishing_api", url)
    err = config_error(tmp_path, text)
    found = problems(err)
    assert len(found) == 1, found
    assert "password" in found[0]
    assert "password_env" in found[0]
    assert found[0].startswith(f"dataferry.toml:{line_of(text, SECRET)}: ")
    for shown in (err.message, err.hint or "", str(err), repr(err)):
        assert SECRET not in shown
    assert err.__cause__ is None and err.__suppress_context__


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://backup@db.internal/app?sslmode=verify-full&sslpassword={SECRET}",
        f"postgresql://backup@db.internal/app?sslkey=/k.pem&SSLPASSWORD={SECRET}",
    ],
    ids=["sslpassword", "sslpassword-upper"],
)
def test_a_url_parameter_that_carries_a_secret_is_refused(tmp_path: Path, url: str) -> None:
    """Issue 19: ``sslpassword`` reached pg_dump's command line. Parameters are an allow-list now."""
    text = VALID.replace("postgresql://backup@pub-api-db/publishing_api", url)
    err = config_error(tmp_path, text)
    (found,) = problems(err)
    assert "'sslpassword' carries a secret" in found
    assert found.startswith(f"dataferry.toml:{line_of(text, SECRET)}: ")
    for shown in (err.message, err.hint or "", str(err), repr(err)):
        assert SECRET not in shown


def test_a_url_parameter_dataferry_does_not_pass_on_is_refused(tmp_path: Path) -> None:
    text = VALID.replace(
        "postgresql://backup@pub-api-db/publishing_api",
        "postgresql://backup@pub-api-db/publishing_api?sslmod=require",
    )
    (found,) = problems(config_error(tmp_path, text))
    assert "'sslmod' is not one dataferry passes on" in found and "sslmode" in found


def test_accepted_url_parameters_load(tmp_path: Path) -> None:
    text = VALID.replace(
        "postgresql://backup@pub-api-db/publishing_api",
        "postgresql://backup@pub-api-db/publishing_api?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=5",
    )
    load(write(tmp_path, text))


def test_password_key_in_file_is_refused_with_advice(tmp_path: Path) -> None:
    """Writing ``password = ...`` in a connection is refused, pointing at password_env, value unseen."""
    text = VALID.replace('password_env = "PROD_PG_PASSWORD"', f'password = "{SECRET}"')
    err = config_error(tmp_path, text)
    found = problems(err)
    assert len(found) == 1
    assert "password_env" in found[0]
    assert SECRET not in err.message


def test_secret_in_invalid_toml_is_not_echoed(tmp_path: Path) -> None:
    """The TOML parser's message carries a position, never the broken line's content."""
    text = VALID + f'\n[databases.x]\nengine = "sqlite"\nnote = "{SECRET}\n'
    err = config_error(tmp_path, text)
    assert "not valid TOML" in err.message
    assert SECRET not in err.message


def test_missing_password_variable_is_not_ready_naming_it(tmp_path: Path) -> None:
    """Connecting needs the variable: NotReady (exit 3) naming it, the database and the environment."""
    cfg = load(write(tmp_path, VALID))
    with pytest.raises(NotReady) as excinfo:
        database_ref(cfg, "publishing-api", "production")
    err = excinfo.value
    assert err.exit_code == 3
    assert "PROD_PG_PASSWORD" in err.message
    assert "publishing-api" in err.message and "production" in err.message
    assert err.hint and "PROD_PG_PASSWORD" in err.hint


def test_password_is_read_from_the_variable_and_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DatabaseRef holds the password as a SecretStr: no repr, str, dump or JSON shows it."""
    monkeypatch.setenv("PROD_PG_PASSWORD", SECRET)
    cfg = load(write(tmp_path, VALID))
    ref = database_ref(cfg, "publishing-api", "production")
    assert ref.password is not None
    assert ref.password.get_secret_value() == SECRET
    assert ref.exclude_tables == ("sessions",)
    shown = [
        repr(ref),
        str(ref),
        f"{ref}",
        f"{ref!r}",
        repr(ref.password),
        str(ref.model_dump()),
        ref.model_dump_json(),
        repr([ref]),
        repr({"ref": ref}),
    ]
    for text in shown:
        assert SECRET not in text, text
    assert "publishing-api" in repr(ref)


def test_empty_password_variable_is_a_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable that is set but empty is passed on (some test servers use an empty password)."""
    monkeypatch.setenv("PROD_PG_PASSWORD", "")
    ref = database_ref(load(write(tmp_path, VALID)), "publishing-api", "production")
    assert ref.password is not None and ref.password.get_secret_value() == ""


def test_connection_for_an_environment_without_one(tmp_path: Path) -> None:
    """A database with no connection in an environment is a ConfigError with the fix in the hint."""
    with pytest.raises(ConfigError) as excinfo:
        database_ref(load(write(tmp_path, VALID)), "alerts", "production")
    assert excinfo.value.hint and "[databases.alerts.environments]" in excinfo.value.hint


def test_sqlite_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///data/x.db`` is beside the config, whatever the working directory."""
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load(write(sub, VALID))
    monkeypatch.chdir(tmp_path)
    ref = database_ref(cfg, "alerts", "staging")
    assert ref.url == f"sqlite:///{sub.resolve() / 'data/alerts.db'}"
    absolute = VALID.replace("sqlite:///data/alerts.db", f"sqlite:///{tmp_path}/abs.db")
    ref = database_ref(load(write(sub, absolute)), "alerts", "staging")
    assert ref.url == f"sqlite:///{tmp_path}/abs.db"


def test_database_ref_is_frozen() -> None:
    """Refs are values: an engine cannot change where another step connects."""
    ref = DatabaseRef(name="a", environment="e", engine="sqlite", url="sqlite:///x")
    with pytest.raises(ValueError):
        ref.url = "sqlite:///y"  # type: ignore[misc]


def test_model_validation_outside_a_file_still_raises(tmp_path: Path) -> None:
    """Library users validating dicts get pydantic's error, with the reference problems in it."""
    with pytest.raises(ValueError, match="no such environment"):
        Config.model_validate(
            {"databases": {"a": {"engine": "sqlite", "environments": {"nowhere": {"url": "sqlite:///x"}}}}}
        )
    assert parse("", tmp_path / "x.toml").path == (tmp_path / "x.toml").resolve()


def test_engine_names_come_from_the_registry(tmp_path: Path) -> None:
    """The engine is checked against the engine registry, at its line; reserved names are refused."""
    for name in ("mongodb", "postgres"):
        line = f'engine = "{name}"'
        text = VALID.replace('engine = "postgresql"', line)
        found = problems(config_error(tmp_path, text))
        assert len(found) == 1, found
        assert found[0].startswith(f"dataferry.toml:{line_of(text, line)}: "), found[0]
        assert f"engine {name!r} is not supported yet: use one of mysql, postgresql, sqlite" in found[0]


# -- strict values, and every problem at once (issue 14) ----------------------------------------


@pytest.mark.parametrize("value", ['"no"', '"yes"', '"false"', "0", "1"])
def test_booleans_are_true_or_false_only(tmp_path: Path, value: str) -> None:
    """``protected = "no"`` was read as false and ``"yes"`` as true: only true and false are booleans."""
    text = VALID.replace("protected = true", f"protected = {value}")
    [problem] = problems(config_error(tmp_path, text))
    assert problem.startswith(
        f"dataferry.toml:{line_of(text, 'protected = ')}: environments.production.protected"
    )
    assert "true or false" in problem, problem


@pytest.mark.parametrize("value", ["26", "26.5", "true"])
def test_a_duration_that_is_not_a_string_says_what_a_duration_is(tmp_path: Path, value: str) -> None:
    """``max_age = 26`` says 'a duration such as 26h', not only that a string was expected."""
    text = VALID + (
        f'\n[jobs.nightly]\nenvironment = "staging"\ndatabase = "publishing-api"\nsteps = ["backup"]\n'
        f"max_age = {value}\n"
    )
    [problem] = problems(config_error(tmp_path, text))
    assert "jobs.nightly.max_age" in problem and "a duration such as 26h" in problem, problem


def test_reference_problems_come_with_field_problems(tmp_path: Path) -> None:
    """An ``after`` loop and a step naming an unknown environment are reported together with a field
    problem elsewhere, not only once that is fixed."""
    text = VALID.replace('engine = "postgresql"', 'engine = "postgres"') + (
        '\n[jobs.a]\nenvironment = "staging"\ndatabase = "alerts"\nsteps = ["restore:nowhere", "backup"]\n'
        'after = "b"\n'
        '\n[jobs.b]\nenvironment = "staging"\ndatabase = "alerts"\nsteps = ["backup"]\nafter = "a"\n'
    )
    found = problems(config_error(tmp_path, text))
    assert any("databases.publishing-api.engine" in p for p in found), found
    assert any("jobs.a.steps" in p and "'restore:nowhere'" in p for p in found), found
    assert any("jobs.a.after" in p and "loops back" in p for p in found), found
    assert any("jobs.b.after" in p and "loops back" in p for p in found), found
