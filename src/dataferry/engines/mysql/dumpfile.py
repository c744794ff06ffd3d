"""Reading ``mariadb-dump``/``mysqldump`` output as a stream of classified lines.

A dump made without ``--databases`` is a sequence of sections, each opened by a comment header::

    (preamble: SET NAMES, TIME_ZONE, UNIQUE_CHECKS, FOREIGN_KEY_CHECKS, SQL_MODE ...)
    -- Table structure for table `t`            DROP TABLE / CREATE TABLE
    -- Dumping data for table `t`               INSERT statements, then t's triggers
    -- Temporary table structure for view `v`   a stand-in so other views can refer to v
    -- Sequence structure for `s`               (MariaDB sequences)
    -- Dumping events for database 'd'
    -- Dumping routines for database 'd'
    -- Final view structure for view `v`
    (postamble: SET ...=@OLD_... restores the session) and "-- Dump completed on ..."

The scanner classifies each line into a ``Part`` so that the engine can count rows while backing
up, spool tables to separate files for a parallel load, and keep the schema objects (triggers,
views, routines, events) aside to re-create them in the live schema after the swap. Lines are
classified by cheap prefix tests; a row line (``(1,'a'),``) is recognised by its first byte.

Rows never span lines: the tools escape newlines inside strings as ``\\n``. A single line holds
at most one INSERT statement (bounded by the server's max_allowed_packet), so memory is bounded
by the largest statement, not by the size of the database.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from dataferry.errors import VerificationFailed
from dataferry.streams import CHUNK, ByteSource

#: The first line of every dump dataferry makes: a SQL comment with what the restore needs to know.
#: It says "MySQL dump" so that db-backup's readability probe (the first five lines of the
#: gunzipped object must contain it) accepts dumps made with mariadb-dump too.
HEADER_MARK = b"-- MySQL dump made by dataferry-mysql: "
#: The first line of dumps made by earlier versions, still read.
OLD_HEADER_MARKS = (b"-- dataferry-mysql: ",)


class Part(enum.Enum):
    """Which section of a dump a line belongs to."""

    PREAMBLE = "preamble"
    STRUCTURE = "structure"
    DATA = "data"
    TRIGGERS = "triggers"
    STANDIN = "standin"
    SEQUENCE = "sequence"
    EVENTS = "events"
    ROUTINES = "routines"
    VIEW = "view"
    POSTAMBLE = "postamble"
    TRAILER = "trailer"


_HEADERS: tuple[tuple[re.Pattern[bytes], Part], ...] = (
    (re.compile(rb"-- Table structure for table `(.*)`\s*$"), Part.STRUCTURE),
    (re.compile(rb"-- Dumping data for table `(.*)`\s*$"), Part.DATA),
    (re.compile(rb"-- Temporary (?:table|view) structure for view `(.*)`\s*$"), Part.STANDIN),
    (re.compile(rb"-- Sequence structure for `(.*)`\s*$"), Part.SEQUENCE),
    (re.compile(rb"-- Dumping events for database '(.*)'\s*$"), Part.EVENTS),
    (re.compile(rb"-- Dumping routines for database '(.*)'\s*$"), Part.ROUTINES),
    (re.compile(rb"-- Final view structure for view `(.*)`\s*$"), Part.VIEW),
)
#: The postamble restores the client session saved by the preamble: ``SET X=@OLD_X``.
_POSTAMBLE_RE = re.compile(rb"/\*!\d{5} SET [A-Z_]+ ?= ?@OLD_[A-Z_]+ ?\*/;")
#: ``INSERT INTO `t` VALUES`` or, from mysqldump for tables with generated columns, with a column list.
_INSERT_RE = re.compile(rb"INSERT INTO `(?:[^`]|``)*`(?: \((?:[^)`]|`(?:[^`]|``)*`)*\))? VALUES ?")
#: A quoted string as the dump tools write it (backslash escapes); unrolled for speed.
_STRING_RE = re.compile(rb"'[^'\\]*(?:\\.[^'\\]*)*'", re.DOTALL)
_TRIGGER_START = b"/*!50003 SET @saved_cs_client"
_DATA_CONTROL = (b"LOCK TABLES ", b"UNLOCK TABLES", b"/*!40000 ALTER TABLE ")
#: Statements that would take the load out of the shadow (dumps made with ``--databases``).
_SWITCH_RE = re.compile(rb"\s*(?:USE\s|(?:CREATE|DROP|ALTER)\s+(?:DATABASE|SCHEMA)\b)", re.IGNORECASE)


def unquote_ident(raw: bytes) -> str:
    """A backquoted name as the dump writes it, unquoted."""
    return raw.decode("utf-8", "surrogateescape").replace("``", "`")


class DumpScanner:
    """Classifies the lines of one dump, in order. ``name`` is the table, view or sequence the
    current section is about; ``header`` is True right after a section header line."""

    def __init__(self) -> None:
        self.part = Part.PREAMBLE
        self.name = ""
        self.header = False
        self.completed = False
        self._in_block = False  # inside DELIMITER ;; (a routine or trigger body: no headers there)

    def classify(self, line: bytes) -> Part:
        """The part ``line`` belongs to (call for every line, in order)."""
        part = self.part
        if part is Part.DATA and line[:1] == b"(":
            return part  # the hot path: one row of an INSERT
        self.header = False
        if self._in_block:
            if line.rstrip() == b"DELIMITER ;":
                self._in_block = False
            return part
        first = line[:1]
        if first == b"-":
            return self._comment(line) if line.startswith(b"-- ") else part
        if first in b"UuCcDdAa \t" and _SWITCH_RE.match(line):
            raise VerificationFailed(
                "the dump changes database (USE, CREATE or DROP DATABASE): it would not load into the shadow",
                hint="dataferry restores dumps made without --databases; nothing was changed",
            )
        if first == b"D" and line.rstrip() == b"DELIMITER ;;":
            self._in_block = True
        elif first == b"/":
            if part in (Part.STRUCTURE, Part.DATA) and line.startswith(_TRIGGER_START):
                self.part = Part.TRIGGERS  # a table's triggers follow its structure or its data
            elif _POSTAMBLE_RE.match(line):
                self.part = Part.POSTAMBLE
        return self.part

    def _comment(self, line: bytes) -> Part:
        for pattern, part in _HEADERS:
            m = pattern.match(line)
            if m:
                self.part, self.name, self.header = part, unquote_ident(m.group(1)), True
                return part
        if line.startswith(b"-- Dump completed"):
            self.part, self.completed = Part.TRAILER, True
        return self.part


def insert_rows(line: bytes) -> int:
    """Rows in one INSERT line: ``INSERT INTO `t` VALUES (..),(..);`` (0 when the rows follow on
    their own lines, as MariaDB 10.11's dump writes them)."""
    m = _INSERT_RE.match(line)
    if m is None:
        return 0
    values = line[m.end() :].strip()
    if not values:
        return 0
    # Strings may contain "),(": blank them out before counting the separators between rows.
    return _STRING_RE.sub(b"''", values).count(b"),(") + 1


class SegmentRowCounter:
    """Counts rows per table from classified segments (tables without rows count 0)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def feed(self, part: Part, name: str, segment: bytes) -> None:
        """Account for one segment (see ``Splitter``)."""
        if part is Part.DATA:
            if segment[:1] == b"(":  # a block of whole row lines
                self.counts[name] += segment.count(b"\n") + (0 if segment.endswith(b"\n") else 1)
            elif segment.startswith(b"INSERT INTO "):
                self.counts[name] += insert_rows(segment)
        elif part is Part.STRUCTURE:
            self.counts.setdefault(name, 0)


def is_data_control(line: bytes) -> bool:
    """LOCK/UNLOCK TABLES and ALTER TABLE ... KEYS: they serialise a load; parallel loads skip them."""
    return line.startswith(_DATA_CONTROL)


# -- byte streams as lines ----------------------------------------------------------------------------


#: A newline that starts something other than a row: where a block of row lines ends.
_NOT_ROW_RE = re.compile(rb"\n[^(]")

#: One classified piece of a dump: its part, the table (or view) it is about, and its bytes.
Segment = tuple[Part, str, bytes]


class Splitter:
    """Cuts a byte stream into classified segments: single lines, except that consecutive row
    lines of an INSERT come as one block, found with one regex search in C. A dump is mostly rows,
    so this keeps the per-line Python work to the schema, a few lines per megabyte of data."""

    def __init__(self, scanner: DumpScanner) -> None:
        self.scanner = scanner
        self._carry: list[bytes] = []  # an unfinished line, in pieces (joined once, not per chunk)

    def push(self, data: bytes) -> list[Segment]:
        """The segments completed by ``data`` (a list: the scanner's state moves as it is built)."""
        last = data.rfind(b"\n")
        if last < 0:
            self._carry.append(data)
            return []
        region = data[: last + 1]
        if self._carry:
            region = b"".join([*self._carry, region])
            self._carry = []
        if last + 1 < len(data):
            self._carry.append(data[last + 1 :])
        return self._split(region)

    def finish(self) -> list[Segment]:
        """The last line, if the stream did not end with a newline."""
        rest = b"".join(self._carry)
        self._carry = []
        return [(self.scanner.classify(rest), self.scanner.name, rest)] if rest else []

    def _split(self, region: bytes) -> list[Segment]:
        scanner = self.scanner
        out: list[Segment] = []
        pos, size = 0, len(region)
        while pos < size:
            if scanner.part is Part.DATA and region[pos] == 0x28:  # "(": rows until a line that is not
                found = _NOT_ROW_RE.search(region, pos)
                end = found.start() + 1 if found else size
                out.append((Part.DATA, scanner.name, region[pos:end]))
            else:
                end = region.index(b"\n", pos) + 1
                line = region[pos:end]
                out.append((scanner.classify(line), scanner.name, line))
            pos = end
        return out


class StreamRowCounter:
    """Counts rows per table in a dump pushed through it in chunks, without copying the rows.

    A backup passes every byte of the dump through this, so it does what ``Splitter`` plus
    ``SegmentRowCounter`` do without materialising segments: blocks of row lines are counted in place
    (``bytes.count`` between offsets), and only the other lines, a few per megabyte, are cut out
    and classified. Measured on a 1 GB dump, the segment-building path cost about 2 s of CPU of
    the backup; this costs a fraction of that.
    """

    def __init__(self, scanner: DumpScanner) -> None:
        self.scanner = scanner
        self._rows = SegmentRowCounter()  # the counting rules for single lines
        self.counts = self._rows.counts
        self._carry: list[bytes] = []  # an unfinished line, in pieces

    def push(self, data: bytes) -> None:
        """Account for the next bytes of the dump."""
        pos = 0
        if self._carry:
            nl = data.find(b"\n")
            if nl < 0:
                self._carry.append(data)
                return
            self._line(b"".join([*self._carry, data[: nl + 1]]))
            self._carry = []
            pos = nl + 1
        last = data.rfind(b"\n")
        if last < pos:
            if pos < len(data):
                self._carry.append(data[pos:])
            return
        self._region(data, pos, last + 1)
        if last + 1 < len(data):
            self._carry.append(data[last + 1 :])

    def finish(self) -> None:
        """The last line, if the dump did not end with a newline."""
        rest = b"".join(self._carry)
        self._carry = []
        if rest:
            self._line(rest)

    def _region(self, data: bytes, pos: int, end: int) -> None:
        scanner = self.scanner
        while pos < end:
            if scanner.part is Part.DATA and data[pos] == 0x28:  # "(": row lines, counted in place
                found = _NOT_ROW_RE.search(data, pos, end)
                stop = found.start() + 1 if found else end
                self.counts[scanner.name] += data.count(b"\n", pos, stop)
                pos = stop
            else:
                stop = data.index(b"\n", pos, end) + 1
                self._line(data[pos:stop])
                pos = stop

    def _line(self, line: bytes) -> None:
        part = self.scanner.classify(line)
        self._rows.feed(part, self.scanner.name, line)


def segments(src: ByteSource, scanner: DumpScanner) -> Iterator[Segment]:
    """The classified segments of a whole dump read from ``src``."""
    splitter = Splitter(scanner)
    while data := src.read(CHUNK):
        yield from splitter.push(data)
    yield from splitter.finish()


@dataclass(frozen=True)
class DumpHeader:
    """What dataferry writes on the first line of a dump: the source database's defaults."""

    database: str = ""
    charset: str | None = None
    collation: str | None = None

    def line(self) -> bytes:
        """The header as a SQL comment line (harmless to any client)."""
        body = {"version": 1, "database": self.database, "charset": self.charset, "collation": self.collation}
        return HEADER_MARK + json.dumps(body, sort_keys=True).encode() + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> DumpHeader | None:
        """The header in ``line``, or None when the dump was not made by dataferry."""
        mark = next((m for m in (HEADER_MARK, *OLD_HEADER_MARKS) if line.startswith(m)), None)
        if mark is None:
            return None
        try:
            body = json.loads(line[len(mark) :])
        except ValueError:
            return None
        return cls(
            database=str(body.get("database") or ""),
            charset=_name_or_none(body.get("charset")),
            collation=_name_or_none(body.get("collation")),
        )


def _name_or_none(value: object) -> str | None:
    """A character set or collation name, which goes into SQL: only plain names are taken."""
    return value if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", value) else None
