"""The MySQL dump scanner, row counter, spooler and schema-object rewriting, on dump text.

No server here: these tests feed hand-written dumps in the layouts of MySQL 8's ``mysqldump``
(every row of an INSERT on one line) and MariaDB 10.11's ``mariadb-dump`` (one row per line), with
the awkward cases the real tools produce: strings containing ``),(``, quotes and backslashes,
routine bodies with comment lines that look like section headers, tables without rows.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dataferry.engines.mysql.backup import HeaderCountingReader
from dataferry.engines.mysql.conn import ServerInfo, Tool, compatibility, version_tuple
from dataferry.engines.mysql.dumpfile import (
    DumpHeader,
    DumpScanner,
    Part,
    Segment,
    SegmentRowCounter,
    Splitter,
    insert_rows,
    segments,
)
from dataferry.engines.mysql.objects import SchemaObjects, disable_event, replace_view, strip_definer
from dataferry.engines.mysql.schemas import derived_name
from dataferry.engines.mysql.spooler import spool
from dataferry.errors import EngineError, VerificationFailed

PREAMBLE = b"""/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;
/*!40101 SET NAMES utf8mb4 */;
/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */;
/*!40103 SET TIME_ZONE='+00:00' */;
/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;
"""

POSTAMBLE = b"""/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;
/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS */;
/*!40101 SET CHARACTER_SET_CLIENT=@OLD_CHARACTER_SET_CLIENT */;

-- Dump completed on 2026-01-01 10:00:00
"""


def table(name: str, rows: bytes, triggers: bytes = b"") -> bytes:
    """A table's structure and data sections (``rows`` is the INSERT text, may be empty)."""
    return (
        b"--\n-- Table structure for table `" + name.encode() + b"`\n--\n\n"
        b"DROP TABLE IF EXISTS `" + name.encode() + b"`;\n"
        b"/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
        b"CREATE TABLE `"
        + name.encode()
        + b"` (\n  `id` int NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n"
        b"/*!40101 SET character_set_client = @saved_cs_client */;\n\n"
        b"--\n-- Dumping data for table `" + name.encode() + b"`\n--\n\n"
        b"LOCK TABLES `" + name.encode() + b"` WRITE;\n"
        b"/*!40000 ALTER TABLE `"
        + name.encode()
        + b"` DISABLE KEYS */;\n"
        + rows
        + b"/*!40000 ALTER TABLE `"
        + name.encode()
        + b"` ENABLE KEYS */;\nUNLOCK TABLES;\n"
        + triggers
    )


TRIGGER = b"""/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
/*!50003 SET sql_mode              = 'STRICT_TRANS_TABLES' */ ;
DELIMITER ;;
/*!50003 CREATE*/ /*!50017 DEFINER=`app`@`%`*/ /*!50003 TRIGGER t_ai AFTER INSERT ON t FOR EACH ROW SET @x = 1 */;;
DELIMITER ;
/*!50003 SET sql_mode              = @saved_sql_mode */ ;
"""

EVENTS = b"""--
-- Dumping events for database 'shop'
--
/*!50106 SET @save_time_zone= @@TIME_ZONE */ ;
/*!50106 DROP EVENT IF EXISTS `purge` */;
DELIMITER ;;
/*!50106 CREATE*/ /*!50117 DEFINER=`app`@`%`*/ /*!50106 EVENT `purge` ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00' ON COMPLETION NOT PRESERVE ENABLE DO DELETE FROM t WHERE id < 0 */ ;;
DELIMITER ;
/*!50106 SET TIME_ZONE= @save_time_zone */ ;
"""

ROUTINES = b"""--
-- Dumping routines for database 'shop'
--
/*!50003 DROP PROCEDURE IF EXISTS `p``odd` */;
/*!50003 SET @saved_cs_client      = @@character_set_client */ ;
DELIMITER ;;
CREATE DEFINER=`app`@`%` PROCEDURE `p``odd`()
BEGIN
--
-- Table structure for table `not_a_table`
--
  SELECT 1;
END ;;
DELIMITER ;
"""

VIEWS = b"""--
-- Final view structure for view `v`
--

/*!50001 DROP VIEW IF EXISTS `v`*/;
/*!50001 SET @saved_cs_client          = @@character_set_client */;
/*!50001 CREATE ALGORITHM=UNDEFINED */
/*!50013 DEFINER=`app`@`%` SQL SECURITY DEFINER */
/*!50001 VIEW `v` AS select `t`.`id` AS `id` from `t` */;
/*!50001 SET character_set_client      = @saved_cs_client */;
"""

STANDIN = b"""--
-- Temporary table structure for view `v`
--

DROP TABLE IF EXISTS `v`;
/*!50001 DROP VIEW IF EXISTS `v`*/;
/*!50001 CREATE VIEW `v` AS SELECT
 1 AS `id` */;
"""

# MySQL 8 layout: all rows of an INSERT on one line; strings hold "),(", quotes and backslashes.
MYSQL8_ROWS = (
    b"INSERT INTO `t` VALUES (1,'a),(b'),(2,'it\\'s \\\\'),(3,NULL),(4,'x\\\\'),(5,0x2729);\n"
    b"INSERT INTO `t` VALUES (6,'),('),(7,'');\n"
)
# MariaDB 10.11 layout: "INSERT INTO `t` VALUES" alone, then one row per line.
MARIADB_ROWS = b"INSERT INTO `u` VALUES\n(1,'a),(b'),\n(2,'line\\nbreak'),\n(3,'(');\n"


def sample_dump() -> bytes:
    """A dump with two tables with rows, an empty table, triggers, a view, events and routines."""
    return (
        b"-- MySQL dump 10.13\n--\n"
        + PREAMBLE
        + table("t", MYSQL8_ROWS, TRIGGER)
        + table("u", MARIADB_ROWS)
        + table("empty", b"")
        + STANDIN
        + EVENTS
        + ROUTINES
        + VIEWS
        + POSTAMBLE
    )


# -- row counting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "rows"),
    [
        (b"INSERT INTO `t` VALUES (1,'a'),(2,'b');", 2),
        (b"INSERT INTO `t` VALUES (1,'a),(b'),(2,'b');", 2),
        (b"INSERT INTO `t` VALUES (1,'it\\'s),('),(2,'\\\\'),(3,'\\\\\\'),(');", 3),
        (b"INSERT INTO `odd`` VALUES (x` VALUES (1),(2),(3);", 3),
        (b"INSERT INTO `t` VALUES (1);", 1),
        (b"INSERT INTO `t` (`a`, `b)`) VALUES (1,'),('),(2,'x');", 2),
        (b"INSERT INTO `t` VALUES", 0),
        (b"INSERT INTO `t` VALUES\n", 0),
    ],
)
def test_insert_rows_counts_tuples_not_separators_inside_strings(line: bytes, rows: int) -> None:
    assert insert_rows(line) == rows


def classified(dump: bytes, chunk: int = 1 << 20) -> tuple[DumpScanner, list[Segment]]:
    """The segments of ``dump`` pushed ``chunk`` bytes at a time."""
    scanner = DumpScanner()
    splitter = Splitter(scanner)
    out: list[Segment] = []
    for i in range(0, len(dump), chunk):
        out += splitter.push(dump[i : i + chunk])
    return scanner, out + splitter.finish()


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_segments_rejoin_exactly_and_row_blocks_hold_only_rows(chunk: int) -> None:
    dump = sample_dump() + b"(no newline at the end"
    _, segs = classified(dump, chunk)
    assert b"".join(seg for _, _, seg in segs) == dump
    for part, _, seg in segs:
        if seg[:1] == b"(" and part is Part.DATA:
            assert all(line.startswith(b"(") for line in seg.splitlines())
        else:
            assert seg.count(b"\n") <= 1


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_row_counter_on_both_layouts_ignores_headers_inside_routine_bodies(chunk: int) -> None:
    scanner, segs = classified(sample_dump(), chunk)
    counter = SegmentRowCounter()
    for seg in segs:
        counter.feed(*seg)
    assert counter.counts == {"t": 7, "u": 3, "empty": 0}
    assert scanner.completed


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_counting_reader_passes_bytes_through_and_counts_whatever_the_chunking(chunk: int) -> None:
    dump = sample_dump()
    header = DumpHeader("shop", "utf8mb4", "utf8mb4_bin").line()
    reader = HeaderCountingReader(io.BytesIO(dump), header)
    out = bytearray()
    while data := reader.read(chunk):
        out += data
    assert bytes(out) == header + dump
    assert reader.counts == {"t": 7, "u": 3, "empty": 0}


def test_counting_reader_refuses_a_dump_without_its_trailer() -> None:
    dump = sample_dump().replace(b"-- Dump completed", b"-- Dump stopped")
    reader = HeaderCountingReader(io.BytesIO(dump), b"")
    with pytest.raises(EngineError, match="incomplete"):
        while reader.read(1024):
            pass


# -- classification and schema objects -----------------------------------------------------------


def test_scanner_classifies_every_section() -> None:
    scanner, segs = classified(sample_dump(), 3)
    parts: dict[Part, set[str]] = {}
    for part, name, _ in segs:
        parts.setdefault(part, set()).add(name)
    assert parts[Part.DATA] == {"t", "u", "empty"}
    assert parts[Part.TRIGGERS] == {"t"}
    assert parts[Part.STANDIN] == {"v"}
    assert parts[Part.VIEW] == {"v"}
    assert Part.EVENTS in parts and Part.ROUTINES in parts and Part.POSTAMBLE in parts
    assert scanner.completed


def collect(dump: bytes) -> tuple[SchemaObjects, bytes]:
    """The schema objects of ``dump`` and the text the shadow would be given."""
    objects = SchemaObjects()
    shadow = bytearray()
    for part, name, seg in segments(io.BytesIO(dump), DumpScanner()):
        shadow += seg if part is Part.DATA else objects.add(part, name, seg)
    return objects, bytes(shadow)


def test_schema_objects_are_kept_with_definers_stripped_and_events_disabled_in_the_shadow() -> None:
    objects, shadow = collect(sample_dump())
    assert b"DEFINER=`app`" not in shadow
    assert shadow.count(b"DEFINER=CURRENT_USER") == 4  # trigger, event, procedure, view
    assert b"PRESERVE DISABLE DO" in shadow and b"PRESERVE ENABLE" not in shadow
    assert b"ON COMPLETION NOT PRESERVE ENABLE DO" in objects.events  # the live copy keeps its status
    assert objects.routine_names == [("PROCEDURE", "p`odd")]
    assert objects.event_names == ["purge"]
    assert list(objects.views) == ["v"] and list(objects.standins) == ["v"]
    assert b"TRIGGER t_ai" in objects.triggers
    assert objects.preamble.startswith(b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT")
    assert b"@OLD_TIME_ZONE */;" in objects.postamble


def test_live_script_replaces_views_in_place_and_adds_stand_ins_only_for_new_views() -> None:
    objects, _ = collect(sample_dump())
    existing = objects.live_script({"v"})
    assert b"DROP VIEW IF EXISTS `v`" not in existing  # never dropped: readers keep a view
    assert b"CREATE OR REPLACE ALGORITHM=UNDEFINED" in existing
    assert b"CREATE VIEW `v` AS SELECT\n 1 AS `id`" not in existing
    fresh = objects.live_script(set())
    assert b"CREATE VIEW `v` AS SELECT\n 1 AS `id`" in fresh
    assert fresh.index(b"TRIGGER t_ai") < fresh.index(b"CREATE OR REPLACE ALGORITHM")
    assert fresh.startswith(bytes(objects.preamble)) and fresh.endswith(bytes(objects.postamble))


def test_schema_objects_survive_serialisation_with_any_bytes() -> None:
    objects, _ = collect(sample_dump().replace(b"SELECT 1;", b"SELECT '\xff\xfe not utf-8';"))
    again = SchemaObjects.from_json(objects.to_json())
    assert again == objects


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"/*!50003 CREATE*/ /*!50017 DEFINER=`a``b`@`%`*/ /*!50003 TRIGGER x",
            b"/*!50003 CREATE*/ /*!50017 DEFINER=CURRENT_USER*/ /*!50003 TRIGGER x",
        ),
        (b"CREATE DEFINER=`root`@`localhost` FUNCTION `f`()", b"CREATE DEFINER=CURRENT_USER FUNCTION `f`()"),
        (
            b"/*!50013 DEFINER=`u`@`10.0.%` SQL SECURITY INVOKER */",
            b"/*!50013 DEFINER=CURRENT_USER SQL SECURITY INVOKER */",
        ),
        (b"SELECT 'DEFINER=`x`@`y`' FROM t", b"SELECT 'DEFINER=`x`@`y`' FROM t"),  # data is not touched
    ],
)
def test_strip_definer(line: bytes, expected: bytes) -> None:
    assert strip_definer(line) == expected


def test_disable_event_changes_only_the_status() -> None:
    line = b"EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION PRESERVE DISABLE ON SLAVE DO SELECT 'ENABLE'"
    assert (
        disable_event(line)
        == b"EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION PRESERVE DISABLE DO SELECT 'ENABLE'"
    )


def test_replace_view_keeps_an_unknown_layout() -> None:
    odd = b"DROP VIEW IF EXISTS v;\nCREATE VIEW v AS SELECT 1;\n"
    assert replace_view(odd) == odd


# -- spooling for a parallel restore ---------------------------------------------------------------


def test_spool_cuts_chunks_between_statements_and_drops_lock_statements(tmp_path: Path) -> None:
    rows = b"".join(b"INSERT INTO `t` VALUES (%d,'a;\\nb'),(%d,'c');\n" % (i, i + 1000) for i in range(50))
    dump = PREAMBLE + table("t", rows) + table("u", MARIADB_ROWS) + POSTAMBLE
    scanner, objects = DumpScanner(), SchemaObjects()
    plan = spool(segments(io.BytesIO(dump), scanner), objects, tmp_path, chunk_bytes=200)
    assert scanner.completed
    assert len(plan.chunks) > 5
    inserts = b""
    for path, size in plan.chunks:
        text = path.read_bytes()
        assert text.startswith(bytes(objects.preamble))  # each client gets the session settings
        body = text[len(objects.preamble) :]
        # row by row, not MariaDB's table-locking bulk insert (the tables have no unique key)
        assert body.startswith(b"SET SESSION unique_checks=1;\n")
        body = body[len(b"SET SESSION unique_checks=1;\n") :]
        # one transaction per chunk, so a deadlock victim is rolled back whole and can be retried
        assert body.startswith(b"START TRANSACTION;\n") and body.endswith(b"COMMIT;\n")
        body = body[len(b"START TRANSACTION;\n") : -len(b"COMMIT;\n")]
        assert len(body) == size
        assert body.endswith(b";\n")  # whole statements only
        assert b"LOCK TABLES" not in body and b"DISABLE KEYS" not in body
        inserts += body
    assert inserts == rows + MARIADB_ROWS
    schema = plan.schema.read_bytes()
    assert b"CREATE TABLE `t`" in schema and b"CREATE TABLE `u`" in schema and b"INSERT" not in schema


def test_spool_with_load_data_writes_row_lines_and_defers_keys(tmp_path: Path) -> None:
    """MariaDB's one-row-per-line tables become LOAD DATA chunks (the rows as they are, every
    statement's last ``);`` turned into ``),``); the old one-line INSERT layout stays INSERT; keys
    other than the primary key wait for an ALTER TABLE after the rows."""
    old_layout = b"INSERT INTO `t` VALUES (1,'a'),(2,'b');\n"
    keyed = table("u", MARIADB_ROWS * 3).replace(
        b"  PRIMARY KEY (`id`)\n", b"  PRIMARY KEY (`id`),\n  KEY `k` (`id`)\n"
    )
    dump = PREAMBLE + table("t", old_layout) + keyed + POSTAMBLE
    scanner, objects = DumpScanner(), SchemaObjects()
    plan = spool(segments(io.BytesIO(dump), scanner), objects, tmp_path, chunk_bytes=60, load_data=True)
    scripts = [path.read_bytes() for path, _ in plan.chunks]
    assert [b"LOAD DATA" in s for s in scripts] == [False, True, True]  # u is cut in two chunks
    assert {p for p, _ in plan.chunks if b"LOAD DATA" in p.read_bytes()} == plan.local_infile
    assert b"INSERT INTO `t` VALUES (1,'a'),(2,'b');" in scripts[0]
    rows = b""
    for path, size in plan.chunks[1:]:
        script = path.read_bytes()
        # the dump's SET statements, then row by row (u has no unique key once k is held back)
        assert script.split(b"LOAD DATA")[0] == PREAMBLE + b"SET SESSION unique_checks=1;\n"
        data = path.with_suffix(".rows").read_bytes()
        assert f"INFILE '{path.with_suffix('.rows')}' INTO TABLE `u`".encode() in script
        assert len(data) == size
        rows += data
    one = b"(1,'a),(b'),\n(2,'line\\nbreak'),\n(3,'('),\n"
    assert rows == one * 3
    schema = plan.schema.read_bytes()
    assert b"  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;" in schema and b"KEY `k`" not in schema
    (keys, _), *more = plan.keys
    assert more == [] and keys.read_bytes().endswith(b"ALTER TABLE `u` ADD KEY `k` (`id`);\n")


# -- names, versions and tool compatibility -------------------------------------------------------


def test_derived_names_fit_mysql_limits_and_stay_distinct() -> None:
    assert derived_name("shop", "_dfshadow") == "shop_dfshadow"
    a, b = derived_name("x" * 60 + "a", "_dfshadow"), derived_name("x" * 60 + "b", "_dfshadow")
    assert len(a) <= 64 and len(b) <= 64 and a != b and a.endswith("_dfshadow")


def test_version_tuple() -> None:
    assert version_tuple("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian") == (10, 11)
    assert version_tuple("8.0.36") == (8, 0)


@pytest.mark.parametrize(
    ("tool", "server", "ok"),
    [
        ("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB", "10.11.19-MariaDB-0+deb12u1", True),
        ("mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB", "8.0.36", False),
        ("mysqldump  Ver 8.0.36 for Linux on x86_64", "10.11.19-MariaDB", False),
        ("mysqldump  Ver 8.0.36 for Linux on x86_64", "8.0.30", True),
        ("mysqldump  Ver 5.7.44 for Linux on x86_64", "8.0.30", False),
    ],
)
def test_tools_must_match_the_server_family(tool: str, server: str, ok: bool) -> None:
    info = ServerInfo(server, "mariadb" in server.lower(), "utf8mb4", "utf8mb4_general_ci")
    assert compatibility(Tool("/usr/bin/x", tool), info)[0] is ok


@pytest.mark.parametrize(
    "statement",
    [
        b"USE `live`;\n",
        b"use live;\n",
        b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `live`;\n",
        b"DROP SCHEMA live;\n",
        b"  alter database live charset latin1;\n",
    ],
)
def test_a_dump_that_changes_database_is_refused_before_the_line_is_loaded(statement: bytes) -> None:
    """A dump made with --databases would load into (or drop) the live database, not the shadow."""
    with pytest.raises(VerificationFailed, match="changes database"):
        classified(PREAMBLE + statement + table("t", MYSQL8_ROWS))


def test_use_inside_a_routine_body_or_a_row_is_not_a_database_change() -> None:
    body = ROUTINES.replace(b"  SELECT 1;", b"  SELECT a FROM t\nUSE INDEX (PRIMARY);")
    rows = b"INSERT INTO `u` VALUES\n(1,'USE `live`;'),\n(2,'x');\n"
    counter = SegmentRowCounter()
    for seg in classified(PREAMBLE + table("u", rows) + body + POSTAMBLE)[1]:
        counter.feed(*seg)
    assert counter.counts == {"u": 2}


def test_urls_and_the_option_file() -> None:
    """The URL gives user, host, port, database (and a socket); the option file is 0600, private,
    quotes the password, and is gone afterwards."""
    from pydantic import SecretStr

    from dataferry.config import DatabaseRef
    from dataferry.engines.mysql.conn import MySqlTarget, option_file
    from dataferry.errors import ConfigError

    def ref(url: str) -> DatabaseRef:
        return DatabaseRef(name="db", environment="e", engine="mysql", url=url, password=SecretStr('a"b\\c'))

    assert MySqlTarget.from_ref(ref("mysql://app@db.example:3307/shop")) == MySqlTarget(
        "app", "db.example", 3307, "shop"
    )
    assert MySqlTarget.from_ref(ref("mysql://app@db/shop")).port == 3306
    assert MySqlTarget.from_ref(ref("mysql://app@localhost/shop?socket=/run/m.sock")).socket == "/run/m.sock"
    for bad in ("mysql://app@db/", "postgresql://app@db/shop", "mysql://app@db:99999/shop"):
        with pytest.raises(ConfigError):
            MySqlTarget.from_ref(ref(bad))
    with option_file(ref("mysql://app@db.example:3307/shop")) as opts:
        assert opts.path.stat().st_mode & 0o777 == 0o600
        assert opts.path.parent.stat().st_mode & 0o777 == 0o700
        text = opts.path.read_text()
        assert 'password="a\\"b\\\\c"' in text and "host=" in text and "port=3307" in text
        assert opts.arg == f"--defaults-extra-file={opts.path}"
        assert opts.env == {"HOME": str(opts.path.parent)}
    assert not opts.path.exists() and not opts.path.parent.exists()


def test_the_header_takes_only_plain_character_set_names() -> None:
    """The header's names go into CREATE DATABASE: anything but a plain name is ignored."""
    good = DumpHeader("shop", "utf8mb4", "utf8mb4_unicode_ci")
    assert DumpHeader.parse(good.line()) == good
    evil = good.line().replace(b'"utf8mb4"', b'"utf8mb4; DROP DATABASE live"')
    assert DumpHeader.parse(evil) == DumpHeader("shop", None, "utf8mb4_unicode_ci")
    assert DumpHeader.parse(b"-- MySQL dump 10.13\n") is None
