"""What a parallel MySQL restore does to a dumped table definition and its rows (no server here:
tests/integration/test_mysql_engine.py loads them into MariaDB and compares the result)."""

from __future__ import annotations

import pytest

from dataferry.engines.mysql.tables import (
    as_load_data,
    connection_charset,
    load_data_charset,
    load_data_statement,
    parse_create,
    rows_on_own_lines,
    session_settings,
)

DOCUMENTS = b"""CREATE TABLE `documents` (
  `id` bigint(20) NOT NULL AUTO_INCREMENT,
  `content_id` char(36) NOT NULL,
  `user_id` bigint(20) NOT NULL,
  `body` mediumtext NOT NULL,
  `details` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL CHECK (json_valid(`details`)),
  PRIMARY KEY (`id`),
  UNIQUE KEY `documents_content_id_idx` (`content_id`),
  KEY `documents_user_id_fkey` (`user_id`),
  FULLTEXT KEY `ft_body` (`body`),
  UNIQUE KEY `long_unique` (`body`) USING HASH,
  CONSTRAINT `documents_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`),
  CONSTRAINT `positive` CHECK (`user_id` > 0)
) ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
"""


def test_secondary_keys_and_foreign_keys_are_deferred_the_rest_stays() -> None:
    table = parse_create(DOCUMENTS)
    assert table is not None and table.name == "documents"
    assert table.deferred == [
        b"UNIQUE KEY `documents_content_id_idx` (`content_id`)",
        b"KEY `documents_user_id_fkey` (`user_id`)",
        b"CONSTRAINT `documents_user_id_fkey` FOREIGN KEY (`user_id`) REFERENCES `users` (`id`)",
    ]
    assert table.create == (
        b"CREATE TABLE `documents` (\n"
        b"  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n"
        b"  `content_id` char(36) NOT NULL,\n"
        b"  `user_id` bigint(20) NOT NULL,\n"
        b"  `body` mediumtext NOT NULL,\n"
        b"  `details` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL CHECK (json_valid(`details`)),\n"
        b"  PRIMARY KEY (`id`),\n"
        b"  FULLTEXT KEY `ft_body` (`body`),\n"
        b"  UNIQUE KEY `long_unique` (`body`) USING HASH,\n"
        b"  CONSTRAINT `positive` CHECK (`user_id` > 0)\n"
        b") ENGINE=InnoDB AUTO_INCREMENT=42 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;\n"
    )
    assert table.alter_keys() == (
        b"ALTER TABLE `documents` ADD UNIQUE KEY `documents_content_id_idx` (`content_id`), "
        b"ADD KEY `documents_user_id_fkey` (`user_id`);\n"
    )
    assert table.alter_foreign_keys() == (
        b"ALTER TABLE `documents` ADD CONSTRAINT `documents_user_id_fkey` "
        b"FOREIGN KEY (`user_id`) REFERENCES `users` (`id`);\n"
    )
    assert table.plain_columns  # numbers, strings and JSON


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ((b"  PRIMARY KEY (`id`),\n", b""), "no primary key: InnoDB would cluster on another index"),
        ((b"PRIMARY KEY (`id`)", b"PRIMARY KEY (`user_id`,`id`)"), "AUTO_INCREMENT not first in the key"),
        ((b"ENGINE=InnoDB", b"ENGINE=Aria"), "not InnoDB"),
    ],
)
def test_keys_stay_when_deferring_could_change_the_table(change: tuple[bytes, bytes], why: str) -> None:
    table = parse_create(DOCUMENTS.replace(*change))
    assert table is not None, why
    assert table.deferred == [] and table.create == DOCUMENTS.replace(*change), why
    assert table.alter_keys() == table.alter_foreign_keys() == b""


def test_a_statement_of_another_shape_is_left_alone() -> None:
    partitioned = DOCUMENTS.replace(
        b"utf8mb4_general_ci;\n", b"utf8mb4_general_ci\n PARTITION BY HASH (`id`);\n"
    )
    assert parse_create(partitioned) is None
    assert parse_create(b"CREATE TABLE `t` (`a` int);\n") is None
    assert parse_create(b"DROP TABLE IF EXISTS `t`;\n") is None


@pytest.mark.parametrize(
    "column",
    [
        b"`img` blob DEFAULT NULL",
        b"`digest` binary(16) DEFAULT NULL",
        b"`v` varbinary(10) DEFAULT NULL",
        b"`flags` bit(8) DEFAULT NULL",
        b"`where` point DEFAULT NULL",
        b"`len` int(11) GENERATED ALWAYS AS (char_length(`body`)) VIRTUAL",
        b"`hidden` int(11) DEFAULT NULL INVISIBLE",
    ],
)
def test_columns_load_data_would_read_differently_keep_insert(column: bytes) -> None:
    block = DOCUMENTS.replace(b"  PRIMARY KEY", b"  " + column + b",\n  PRIMARY KEY")
    table = parse_create(block)
    assert table is not None and not table.plain_columns


def test_system_versioned_tables_keep_insert() -> None:
    table = parse_create(DOCUMENTS.replace(b"ENGINE=InnoDB", b"ENGINE=InnoDB WITH SYSTEM VERSIONING"))
    assert table is not None and not table.plain_columns


def test_rows_become_load_data_lines() -> None:
    rows = b"(1,'a);\\nb',NULL),\n(2,'it\\'s',0.5);\n(3,'x',NULL);\n"
    assert as_load_data(rows) == b"(1,'a);\\nb',NULL),\n(2,'it\\'s',0.5),\n(3,'x',NULL),\n"
    assert rows_on_own_lines(b"INSERT INTO `t``q` VALUES\n")
    assert not rows_on_own_lines(b"INSERT INTO `t` VALUES (1,'a'),(2,'b');\n")
    assert not rows_on_own_lines(b"INSERT INTO `t` (`a`, `b`) VALUES\n")


def test_session_settings_keep_only_set_statements() -> None:
    preamble = (
        b"/*!40101 SET NAMES utf8mb4 */;\n"
        b"/*!40103 SET TIME_ZONE='+00:00' */;\n"
        b"SELECT 'not a setting'; SET @x = 1;\n"
        b"SET @saved = 2;\n"
    )
    assert session_settings(preamble) == (
        b"/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\nSET @saved = 2;\n"
    )
    assert connection_charset(preamble) == "utf8mb4"
    assert connection_charset(b"/*!40103 SET TIME_ZONE='+00:00' */;\n") is None


def test_a_table_whose_every_column_stores_the_dumps_utf8_loads_its_fields_as_bytes() -> None:
    table = parse_create(DOCUMENTS)  # a JSON column names utf8mb4 and utf8mb4_bin: the same
    assert table is not None and table.charset == "utf8mb4"
    assert load_data_charset(table, "utf8mb4") == "binary"
    assert load_data_charset(table, "utf8mb3") == "utf8mb3"  # other bytes than the columns store
    assert load_data_charset(table, "latin1") == "latin1"


@pytest.mark.parametrize(
    "column",
    [
        b"`old` varchar(10) CHARACTER SET latin1 COLLATE latin1_swedish_ci DEFAULT NULL",
        b"`old` varchar(10) COLLATE latin1_swedish_ci DEFAULT NULL",
        b"`n` varchar(10) CHARACTER SET utf8mb3 COLLATE utf8mb3_general_ci DEFAULT NULL",
        # only spelled in a comment: taken as another character set all the same (never binary wrongly)
        b"`c` int(11) DEFAULT NULL COMMENT 'was CHARACTER SET latin1'",
    ],
)
def test_a_column_in_another_character_set_keeps_the_dumps_and_the_servers_conversion(column: bytes) -> None:
    table = parse_create(DOCUMENTS.replace(b"  PRIMARY KEY", b"  " + column + b",\n  PRIMARY KEY"))
    assert table is not None and table.plain_columns and table.charset is None
    assert load_data_charset(table, "utf8mb4") == "utf8mb4"


def test_a_utf8mb3_table_from_a_utf8mb3_dump_loads_as_bytes_and_latin1_never_does() -> None:
    utf8mb3 = parse_create(DOCUMENTS.replace(b"utf8mb4", b"utf8mb3"))
    latin1 = parse_create(DOCUMENTS.replace(b"utf8mb4", b"latin1"))
    unknown = parse_create(DOCUMENTS.replace(b" DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci", b""))
    assert utf8mb3 is not None and load_data_charset(utf8mb3, "utf8mb3") == "binary"
    assert (
        latin1 is not None and latin1.charset == "latin1" and load_data_charset(latin1, "latin1") == "latin1"
    )
    assert (
        unknown is not None and unknown.charset is None and load_data_charset(unknown, "utf8mb4") == "utf8mb4"
    )


def test_load_data_statement_quotes_path_and_table() -> None:
    stmt = load_data_statement("/tmp/it's\\here/chunk.rows", "we`ird", "utf8mb4")
    assert stmt.startswith(b"LOAD DATA LOCAL INFILE '/tmp/it\\'s\\\\here/chunk.rows' INTO TABLE `we``ird` ")
    assert b"CHARACTER SET utf8mb4 " in stmt
    assert stmt.endswith(b"LINES STARTING BY '(' TERMINATED BY '),\\n';\n")


def test_tables_without_a_unique_key_at_load_time_load_row_by_row() -> None:
    """unique_checks=1 keeps MariaDB off its table-locking bulk insert; it is set only where the table
    as created for the load has no secondary unique key to check (its keys were held back)."""
    hash_key = b"  UNIQUE KEY `long_unique` (`body`) USING HASH,\n"
    deferred = parse_create(DOCUMENTS.replace(hash_key, b""))
    assert deferred is not None and deferred.row_by_row
    assert deferred.load_session() == b"SET SESSION unique_checks=1;\n"
    with_hash = parse_create(DOCUMENTS)  # a hash UNIQUE key stays in CREATE TABLE: checks as dumped
    assert with_hash is not None and not with_hash.row_by_row and with_hash.load_session() == b""
    kept = parse_create(DOCUMENTS.replace(b"  PRIMARY KEY (`id`),\n", b""))  # no primary key: keys stay
    assert kept is not None and not kept.row_by_row and kept.load_session() == b""
    aria = parse_create(DOCUMENTS.replace(b"ENGINE=InnoDB", b"ENGINE=Aria"))
    assert aria is not None and aria.load_session() == b""
