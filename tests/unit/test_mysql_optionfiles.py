"""``~/.my.cnf`` and the system option files, read as the MySQL client tools read them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataferry.engines.mysql.optionfiles import client_defaults, standard_files


def test_client_groups_give_user_and_password_later_files_win(tmp_path: Path) -> None:
    system = tmp_path / "my.cnf"
    system.write_text("[client]\nuser = root\npassword = system-pw\n[mysqld]\npassword = not-a-client\n")
    home = tmp_path / ".my.cnf"
    home.write_text(
        "# GOV.UK's root .my.cnf\n[mysql]\npassword = only-for-mysql\n"
        '[client]\nhost = elsewhere.example\npassword = "s3cr\\"et # not a comment"\n'
    )
    assert client_defaults([system, home]) == {"user": "root", "password": 's3cr"et # not a comment'}
    assert client_defaults([home, system]) == {"user": "root", "password": "system-pw"}


def test_includes_are_followed_and_unreadable_files_skipped(tmp_path: Path) -> None:
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "50-client.cnf").write_text("[client-server]\npassword=from-dir   # comment\n")
    (conf_d / "ignored.txt").write_text("[client]\npassword=no\n")
    main = tmp_path / "my.cnf"
    main.write_text(f"[client]\nuser=a\n!includedir {conf_d}\n!include {tmp_path / 'missing.cnf'}\n")
    assert client_defaults([tmp_path / "nope.cnf", main]) == {"user": "a", "password": "from-dir"}


def test_the_standard_files_end_with_the_users_own(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MARIADB_HOME", "/opt/mariadb")
    assert standard_files() == [
        Path("/etc/my.cnf"),
        Path("/etc/mysql/my.cnf"),
        Path("/opt/mariadb/my.cnf"),
        tmp_path / ".my.cnf",
    ]
