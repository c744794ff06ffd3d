"""What a parallel MySQL restore does to a table's definition and rows to load them faster.

Two things, both measured on MariaDB 10.11 with a 1 GB database (bench/README.md):

Secondary indexes and foreign keys after the rows
    InnoDB keeps every secondary index up to date row by row while rows are inserted; building
    an index afterwards sorts the rows once (``ALTER TABLE ... ADD KEY``, in place). A table's
    ``CREATE TABLE`` is therefore run with its primary key only, and its other keys and foreign
    keys are added by one ``ALTER TABLE`` once its rows are in (foreign keys are not checked:
    ``foreign_key_checks=0``, the rows come from a consistent dump). ``SHOW CREATE TABLE`` is the
    same afterwards. Keys of different tables are built in parallel; foreign keys are added one
    table after another, after every key: concurrent ``ADD FOREIGN KEY`` on tables that refer to
    each other failed (ERROR 1825) and once crashed MariaDB 10.11 in our tests. Tables where this could change anything keep their definition as dumped:
    no primary key (InnoDB would cluster on another index), an ``AUTO_INCREMENT`` column that is
    not the primary key's first column (it must be indexed at once), non-InnoDB or partitioned
    tables; ``FULLTEXT``, ``SPATIAL`` and hash (long ``UNIQUE``) keys always stay.

``LOAD DATA`` instead of ``INSERT``
    The server parses an ``INSERT`` row by row as SQL; ``LOAD DATA`` reads delimited text, about
    1.4x faster. MariaDB's dump writes one row per line (``(1,'a',NULL),``) with the same
    backslash escapes ``LOAD DATA`` reads, so the row lines load as they are once each
    statement's final ``);`` becomes ``),``. Only tables whose columns are all numbers, strings,
    dates or JSON qualify: binary, bit and spatial columns are dumped as hex literals
    (``--hex-blob``) that ``LOAD DATA`` would store as text, and generated or invisible columns
    take no value. It needs ``local_infile`` on the server; without it rows load as ``INSERT``.

Row by row, not MariaDB's bulk insert
    MariaDB (10.6+) runs a transaction that starts on an EMPTY table with ``unique_checks=0``
    and ``foreign_key_checks=0`` (the dump's own settings) as a "bulk insert": it locks the whole
    table until the transaction commits, so every other chunk of that table waits, and it cost
    about 2.5x the server CPU of the same rows inserted into a table that already has rows
    (34 MB of ``documents``: 1.38 s against 0.53 s, bench/README.md). A table created with no
    secondary ``UNIQUE`` key (its keys deferred, or it has none) therefore loads with
    ``unique_checks=1``: that only asks InnoDB to check unique secondary keys the table does not
    have yet, and it keeps MariaDB off the bulk path, so every chunk, the first one too, loads row
    by row and in parallel with the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dataferry.engines.mysql.conn import quote_ident

_CREATE_RE = re.compile(rb"CREATE TABLE `((?:[^`]|``)+)` \(\n")
_COLUMN_RE = re.compile(rb"\s+`(?:[^`]|``)+` ([a-z0-9]+)")
#: Column types dumped as plain SQL literals (numbers, quoted strings, NULL) that LOAD DATA reads alike.
_PLAIN_TYPES = frozenset(
    b"tinyint smallint mediumint int integer bigint decimal numeric float double real "
    b"char varchar tinytext text mediumtext longtext json enum set "
    b"date time datetime timestamp year inet4 inet6 uuid".split()
)
_DEFERRABLE = (b"UNIQUE KEY ", b"KEY ")


@dataclass
class TableDef:
    """One ``CREATE TABLE`` as a parallel restore runs it."""

    name: str
    #: The statement to run first: as dumped, or without the definitions in ``deferred``.
    create: bytes
    #: Key and foreign key definitions to add once the rows are in (``ALTER TABLE ... ADD``).
    deferred: list[bytes] = field(default_factory=list)
    #: Every column is of a type ``LOAD DATA`` reads exactly as the dump writes it.
    plain_columns: bool = False
    #: An InnoDB table created with no secondary unique key: its chunks load row by row.
    row_by_row: bool = False
    #: The one character set every column of the table stores text in (None: several, or unknown).
    charset: str | None = None

    def load_session(self) -> bytes:
        """What a chunk of this table sets after the dump's session settings (see the module
        docstring: ``unique_checks=1`` keeps MariaDB off its table-locking bulk insert)."""
        return b"SET SESSION unique_checks=1;\n" if self.row_by_row else b""

    def alter_keys(self) -> bytes:
        """The ``ALTER TABLE`` that adds the deferred keys (empty when there are none)."""
        return self._alter([d for d in self.deferred if not _foreign_key(d)])

    def alter_foreign_keys(self) -> bytes:
        """The ``ALTER TABLE`` that adds the deferred foreign keys (empty when there are none)."""
        return self._alter([d for d in self.deferred if _foreign_key(d)])

    def _alter(self, definitions: list[bytes]) -> bytes:
        if not definitions:
            return b""
        name = quote_ident(self.name).encode()
        return b"ALTER TABLE " + name + b" " + b", ".join(b"ADD " + d for d in definitions) + b";\n"


def parse_create(block: bytes) -> TableDef | None:
    """Split a dumped ``CREATE TABLE`` statement (one definition per line, as the dump tools
    write it); None when ``block`` is not one."""
    m = _CREATE_RE.match(block)
    lines = block.splitlines(keepends=True)
    if m is None or len(lines) < 3 or not lines[-1].startswith(b")") or not lines[-1].endswith(b";\n"):
        return None
    name = m.group(1).decode("utf-8", "surrogateescape").replace("``", "`")
    body = [ln.strip().removesuffix(b",") for ln in lines[1:-1]]
    table = TableDef(name=name, create=block, plain_columns=_plain_columns(body, lines[-1]))
    table.charset = _one_charset(body, lines[-1])
    if _can_defer(body, lines[-1]):
        keep = [d for d in body if not _deferrable(d)]
        table.deferred = [d for d in body if _deferrable(d)]
        if table.deferred:
            table.create = lines[0] + b",\n".join(b"  " + d for d in keep) + b"\n" + lines[-1]
        table.row_by_row = not any(d.startswith(b"UNIQUE KEY ") for d in keep)
    return table


def _foreign_key(definition: bytes) -> bool:
    return definition.startswith(b"CONSTRAINT ") and b" FOREIGN KEY " in definition


def _deferrable(definition: bytes) -> bool:
    plain_key = definition.startswith(_DEFERRABLE) and b" USING HASH" not in definition
    return plain_key or _foreign_key(definition)


def _can_defer(body: list[bytes], options: bytes) -> bool:
    """True when adding the keys after the rows leaves the table exactly as dumped."""
    if b"ENGINE=InnoDB" not in options or b"PARTITION" in options:
        return False
    primary = next((d for d in body if d.startswith(b"PRIMARY KEY ")), None)
    if primary is None:
        return False
    for d in body:
        if d.startswith(b"`") and b" AUTO_INCREMENT" in d:
            column = d[: d.index(b"`", 1) + 1]
            if not primary.startswith(b"PRIMARY KEY (" + column):
                return False
    return True


def _plain_columns(body: list[bytes], options: bytes) -> bool:
    if b"WITH SYSTEM VERSIONING" in options:
        return False
    for d in body:
        if not d.startswith(b"`"):
            continue  # keys and constraints
        m = _COLUMN_RE.match(b" " + d)
        if m is None or m.group(1) not in _PLAIN_TYPES:
            return False
        if b" GENERATED " in d or b" INVISIBLE" in d or b" AS (" in d:
            return False
    return True


_TABLE_CHARSET_RE = re.compile(rb" DEFAULT CHARSET=([A-Za-z0-9_]+)")
_CHARSET_RE = re.compile(rb" CHARACTER SET ([A-Za-z0-9_]+)")
_COLLATE_RE = re.compile(rb" COLLATE ([A-Za-z0-9_]+)")


def _one_charset(body: list[bytes], options: bytes) -> str | None:
    """The table's default character set when no column names another (in its ``CHARACTER SET``
    or its ``COLLATE``); a comment or default that spells one only makes this None."""
    m = _TABLE_CHARSET_RE.search(options)
    if m is None:
        return None
    charset = m.group(1)
    for d in body:
        if not d.startswith(b"`"):
            continue  # keys and constraints
        if any(c != charset for c in _CHARSET_RE.findall(d)):
            return None
        if any(not c.startswith(charset + b"_") for c in _COLLATE_RE.findall(d)):
            return None
    return charset.decode()


#: Character sets in which no byte of a multi-byte character is an ASCII byte (UTF-8's are all
#: 0x80 or above), so a field's quotes, commas and escapes are found without decoding it.
_UTF8 = frozenset({"utf8mb4", "utf8mb3"})


def load_data_charset(table: TableDef, dump_charset: str) -> str:
    """The ``CHARACTER SET`` of the ``LOAD DATA`` of ``table``'s rows, which the dump wrote in
    ``dump_charset``. ``binary`` when the dump is UTF-8 and every column of the table stores that
    same character set: the server then takes each field's bytes as they are, which are what the
    column stores, instead of decoding them character by character (10% less server CPU for a
    chunk of the bench's documents, 4% for events, the same ``CHECKSUM TABLE``; bench/README.md).
    Otherwise the dump's character set, which the server converts to each column's."""
    return "binary" if dump_charset in _UTF8 and table.charset == dump_charset else dump_charset


_INSERT_HEADER_RE = re.compile(rb"INSERT INTO `(?:[^`]|``)*` VALUES\n\Z")
_NAMES_RE = re.compile(rb"SET NAMES ([A-Za-z0-9_]+)")


def rows_on_own_lines(insert_line: bytes) -> bool:
    """True for MariaDB's ``INSERT INTO `t` VALUES`` with the rows on the lines that follow."""
    return _INSERT_HEADER_RE.match(insert_line) is not None


def connection_charset(preamble: bytes) -> str | None:
    """The character set the dump's text is in (its ``SET NAMES``), None when it does not say."""
    found = _NAMES_RE.findall(preamble)
    return found[-1].decode() if found else None


_SETTING_RE = re.compile(rb"^(?:/\*!\d{5} SET [^;\n]*\*/|SET [^;\n]*);\n", re.MULTILINE)


def session_settings(preamble: bytes) -> bytes:
    """The dump preamble's ``SET`` statements only (character set, time zone, SQL mode): the
    session a ``LOAD DATA`` chunk runs in, with nothing else from the dump beside it."""
    return b"".join(m.group(0) for m in _SETTING_RE.finditer(preamble))


def as_load_data(rows: bytes) -> bytes:
    """Row lines of INSERT statements as LOAD DATA lines: each statement's last ``);`` becomes
    ``),``. A raw newline never occurs inside a dumped value (it is written ``\\n``), so ``);``
    followed by one always ends a statement."""
    return rows.replace(b");\n", b"),\n")


def load_data_statement(path: str, table: str, charset: str) -> bytes:
    """``LOAD DATA LOCAL INFILE`` reading row lines written by ``as_load_data``."""
    quoted_path = path.replace("\\", "\\\\").replace("'", "\\'")
    return (
        f"LOAD DATA LOCAL INFILE '{quoted_path}' INTO TABLE {quote_ident(table)} CHARACTER SET {charset} "
        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\\'' ESCAPED BY '\\\\' "
        "LINES STARTING BY '(' TERMINATED BY '),\\n';\n"
    ).encode("utf-8", "surrogateescape")
