"""PostgreSQL's SQL fragments."""

from __future__ import annotations

from collections.abc import Sequence

from dataferry.sanitise.dialects.base import Dialect

#: the hex digits of valid UTF-8 without NUL (the well-formed byte sequences of Unicode 3.9, table
#: 3-7), two hex digits a byte
_UTF8_HEX = (
    "^(?:0[1-9a-f]|[1-7][0-9a-f]"
    "|(?:c[2-9a-f]|d[0-9a-f])[89ab][0-9a-f]"
    "|e0[ab][0-9a-f][89ab][0-9a-f]"
    "|(?:e[1-9a-c]|e[ef])(?:[89ab][0-9a-f]){2}"
    "|ed[89][0-9a-f][89ab][0-9a-f]"
    "|f0(?:9[0-9a-f]|[ab][0-9a-f])(?:[89ab][0-9a-f]){2}"
    "|f[1-3](?:[89ab][0-9a-f]){3}"
    "|f48[0-9a-f](?:[89ab][0-9a-f]){2})*$"
)

#: whether the connected account ignores row-level security (a superuser, or BYPASSRLS)
_BYPASSES_RLS = "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)"

#: the name and kind of the large objects, scanned as one table with a ``data`` column
LARGE_OBJECTS = "large objects"


class Postgres(Dialect):
    """PostgreSQL 11 or later (sha256 is built in from 11)."""

    name = "postgresql"
    #: type categories (pg_type.typcategory) whose values can carry text: strings, user-defined and
    #: extension types (json, jsonb, xml, hstore, tsvector, bytea, citext), composites, unknown; an
    #: array counts by its element's category. Numbers, times, booleans, enums, ranges, networks,
    #: geometry and bit strings cannot hold an address or a phone number written as text.
    text_categories = "'S', 'U', 'C', 'X'"
    #: user-defined types of those categories whose text is never personal (and is full of digits)
    not_text = "'uuid', 'pg_lsn', 'txid_snapshot', 'pg_snapshot', 'tsquery'"

    known_kinds = frozenset(
        {"table", "partition", "view", "materialised view", "sequence", "foreign table", "type", "index"}
        | {"toast table", "large objects"}
    )
    derived_kinds = frozenset({"materialised view", "large objects"})
    string_shortcuts = True  # the scan's string-function shortcuts halve its time here (base.py)

    def string(self, value: str) -> str:
        """Standard literal; an escape-string literal when it holds a backslash, whatever the
        server's ``standard_conforming_strings``."""
        if "\\" in value:
            return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
        return super().string(value)

    def as_text(self, expr: str) -> str:
        """``expr::text``."""
        return f"({expr})::text"

    def salt_prelude(self, salt: str) -> str:
        """A custom setting for this session (SET prints nothing back, unlike set_config())."""
        return f"SET dataferry.salt = {self.string(salt)};\n"

    def salt(self) -> str:
        """A scalar subquery: evaluated once per statement, not per row."""
        return "(SELECT current_setting('dataferry.salt'))"

    def digest(self, expr: str) -> str:
        """sha256 of the UTF-8 bytes, hex encoded."""
        return f"encode(sha256(convert_to({self.salt()} || {self.as_text(expr)}, 'UTF8')), 'hex')"

    def hex_int(self, hex_expr: str, start: int) -> str:
        """Hex digits through a bit string."""
        return f"('x' || substr({hex_expr}, {start + 1}, 4))::bit(16)::int"

    def pick(self, index_expr: str, options: Sequence[str]) -> str:
        """Array subscript (1-based)."""
        items = ", ".join(self.string(o) for o in options)
        return f"(ARRAY[{items}])[1 + ({index_expr}) % {len(options)}]"

    def pad3(self, expr: str) -> str:
        """lpad."""
        return f"lpad(({expr})::text, 3, '0')"

    def stars(self, expr: str) -> str:
        """repeat."""
        return f"repeat('*', char_length({expr}))"

    def contains(self, haystack: str, needle: str) -> str:
        """strpos."""
        return f"strpos({haystack}, {needle}) > 0"

    def regex(self, expr: str, pattern: str) -> str:
        """Case-insensitive ARE match."""
        return f"({expr})::text ~* {self.string(pattern)}"

    def one_address_at(self, expr: str, domain: str) -> str:
        """right() compared in the "C" collation (a nondeterministic one could fold accents), and
        the first ``@`` is the suffix's; positions and lengths in characters."""
        text, suffix = self.as_text(expr), "@" + domain
        return (
            f'(right({text}, {len(suffix)}) COLLATE "C" = {self.string(suffix)} '
            f"AND strpos({text}, '@') = char_length({text}) - {len(suffix) - 1})"
        )

    def prefix_then_digits(self, expr: str, prefix: str, digits: int) -> str:
        """In the "C" collation: code point order, whatever the column's collation."""
        return self._prefix_then_digits(
            self.as_text(expr), prefix, digits, "char_length", "substr", ' COLLATE "C"'
        )

    def older_than(self, column: str, days: int) -> str:
        """Compared with now() on the server."""
        return f"({column} IS NULL OR {column} < now() - interval '{int(days)} days')"

    def columns_query(self) -> str:
        """The catalog, every schema but the system ones; ``public`` tables unqualified. Tables,
        partitioned tables and materialised views (scanned, not classified), not partitions: a partition is classified, masked and scanned
        through its parent. The fourth column says whether the scan reads the column (by type
        category, so domains, arrays of any text-like or JSON type and extension types count)."""
        return (
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END, "
            "a.attname, format_type(a.atttypid, a.atttypmod), "
            f"COALESCE(e.typcategory, b.typcategory, t.typcategory) IN ({self.text_categories}) "
            f"AND COALESCE(e.typname, b.typname, t.typname) NOT IN ({self.not_text}), a.attnum::int "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
            "JOIN pg_type t ON t.oid = a.atttypid "
            "LEFT JOIN pg_type b ON t.typtype = 'd' AND b.oid = t.typbasetype "
            "LEFT JOIN pg_type e ON e.oid = COALESCE(b.typelem, t.typelem) "
            "AND COALESCE(b.typcategory, t.typcategory) = 'A' "
            "WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
            # the large objects, scanned as one table (see scan_from)
            f"UNION ALL SELECT '{LARGE_OBJECTS}', 'data', 'bytea', true, 1 "
            "WHERE EXISTS (SELECT 1 FROM pg_largeobject_metadata) ORDER BY 1, 5"
        )

    def objects_query(self) -> str:
        """Every relation of the user's schemas by kind (partitions apart), in creation order: a
        shadow or scratch copy is made by pg_restore, which creates objects in dependency order, so
        a materialised view comes after those it reads. Then the large objects, if any."""
        return (
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END, "
            "CASE WHEN c.relispartition THEN 'partition' "
            # rows a policy hides from this account would be neither masked nor scanned
            f"WHEN c.relkind IN ('r', 'p') AND c.relrowsecurity AND NOT {_BYPASSES_RLS} "
            "AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE')) "
            "THEN 'table with row-level security' "
            "WHEN c.relkind IN ('r', 'p') THEN 'table' "
            "WHEN c.relkind = 'm' THEN 'materialised view' WHEN c.relkind = 'v' THEN 'view' "
            "WHEN c.relkind = 'S' THEN 'sequence' WHEN c.relkind = 'f' THEN 'foreign table' "
            "WHEN c.relkind = 'c' THEN 'type' WHEN c.relkind IN ('i', 'I') THEN 'index' "
            "WHEN c.relkind = 't' THEN 'toast table' ELSE 'relation of kind ' || c.relkind::text END, c.oid::bigint "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
            f"UNION ALL SELECT '{LARGE_OBJECTS}', '{LARGE_OBJECTS}', 0 "
            "WHERE EXISTS (SELECT 1 FROM pg_largeobject_metadata) ORDER BY 3"
        )

    def definitions_query(self) -> str:
        """Views and materialised views, functions and procedures, triggers, rewrite rules,
        column defaults, check constraints and comments of the user's schemas."""
        user = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\\\_%'"
        rel = "JOIN pg_class c ON c.oid = {} JOIN pg_namespace n ON n.oid = c.relnamespace"
        return " UNION ALL ".join(
            [
                "SELECT 'view ' || c.oid::regclass::text, pg_get_viewdef(c.oid) FROM pg_class c "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('v', 'm') AND {user}",
                "SELECT 'function ' || p.oid::regprocedure::text, p.prosrc FROM pg_proc p "
                f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {user}",
                "SELECT 'trigger ' || tg.tgname || ' on ' || c.oid::regclass::text, pg_get_triggerdef(tg.oid) "
                f"FROM pg_trigger tg {rel.format('tg.tgrelid')} WHERE NOT tg.tgisinternal AND {user}",
                "SELECT 'rule ' || r.rulename || ' on ' || c.oid::regclass::text, pg_get_ruledef(r.oid) "
                f"FROM pg_rewrite r {rel.format('r.ev_class')} WHERE r.ev_type <> '1' AND {user}",
                "SELECT 'default ' || c.oid::regclass::text || '.' || a.attname, pg_get_expr(d.adbin, d.adrelid) "
                f"FROM pg_attrdef d {rel.format('d.adrelid')} "
                f"JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE {user}",
                "SELECT 'constraint ' || co.conname, pg_get_constraintdef(co.oid) FROM pg_constraint co "
                f"JOIN pg_namespace n ON n.oid = co.connamespace WHERE co.contype = 'c' AND {user}",
                "SELECT 'comment on ' || pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description "
                "FROM pg_description d WHERE d.objoid >= 16384",
            ]
        )

    def finish(self, kinds: dict[str, str]) -> list[tuple[str, str]]:
        """Every materialised view refreshed from the sanitised tables (pg_restore filled them from
        the raw rows), in creation order so those that read other materialised views come last; a
        view created ``WITH NO DATA`` is filled too, from sanitised rows. Then the planner's
        statistics taken again (``ANALYZE``): an analyze of the raw rows (autovacuum during a long
        restore, or a script) leaves sampled values in ``pg_statistic``, readable as ``pg_stats``."""
        refresh = [
            (f"refresh materialised view {name}", f"REFRESH MATERIALIZED VIEW {self.table(name)};")
            for name, kind in kinds.items()
            if kind == "materialised view"
        ]
        return [*refresh, ("analyze", "ANALYZE;")]

    def triggers_query(self) -> str:
        """Enabled user triggers and non-SELECT rewrite rules of tables; internal triggers (foreign
        keys, whose cascades must still run) are not listed."""
        name = "CASE WHEN n.nspname = 'public' THEN c.relname ELSE n.nspname || '.' || c.relname END"
        where = (
            "c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%'"
        )
        return (
            f"SELECT {name}, tg.tgname, tg.tgenabled::text, 'TRIGGER' FROM pg_trigger tg "
            "JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE NOT tg.tgisinternal AND tg.tgenabled <> 'D' AND {where} "
            f"UNION ALL SELECT {name}, r.rulename, r.ev_enabled::text, 'RULE' FROM pg_rewrite r "
            "JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE r.ev_type <> '1' AND r.ev_enabled <> 'D' AND {where} ORDER BY 1, 2"
        )

    def trigger_toggles(self, row: tuple[object, ...]) -> tuple[str, str]:
        """``ALTER TABLE ... DISABLE TRIGGER|RULE``, then enabled again as it was (``O`` origin,
        ``A`` always, ``R`` replica); transactional, and per object, so foreign keys still cascade
        (``session_replication_role = replica`` would stop them, and needs a superuser)."""
        table, name, state, kind = (str(v) for v in row)
        on = {"A": "ENABLE ALWAYS", "R": "ENABLE REPLICA"}.get(state, "ENABLE")
        head = f"ALTER TABLE {self.table(table)}"
        return (f"{head} DISABLE {kind} {self.ident(name)};", f"{head} {on} {kind} {self.ident(name)};")

    def large_objects(self, drop: bool) -> str:
        """Unlink every large object (``drop``), or those no ``oid`` or ``lo`` column of a table
        refers to (as ``vacuumlo`` does): a column the rules emptied leaves its objects orphaned,
        and pg_dump would publish them."""
        if drop:
            return "SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata;"
        return (
            "DO $dataferry$ DECLARE col record; refs text := ''; BEGIN "
            "FOR col IN SELECT a.attrelid::regclass::text AS rel, a.attname AS att FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attnum > 0 AND NOT a.attisdropped "
            "AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND (t.oid = 'oid'::regtype OR (t.typtype = 'd' AND t.typbasetype = 'oid'::regtype)) "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
            "LOOP refs := refs || format(' AND NOT EXISTS (SELECT 1 FROM %s x WHERE x.%I = m.oid)', col.rel, col.att); "
            "END LOOP; "
            "EXECUTE 'SELECT count(lo_unlink(m.oid)) FROM pg_largeobject_metadata m WHERE true' || refs; "
            "END $dataferry$;"
        )

    def scan_from(self, table: str, kind: str) -> str:
        """The large objects as one table of ``data``."""
        if kind == LARGE_OBJECTS:
            return "(SELECT lo_get(oid) AS data FROM pg_largeobject_metadata) AS large_objects"
        return table

    def scan_text(self, column: str, data_type: str) -> str:
        """bytea decoded as UTF-8 where it is valid UTF-8 without NUL (tested on its hex digits
        first: ``convert_from`` raises on anything else, and on a server whose encoding is not UTF-8
        the conversion could too); otherwise with its non-printable bytes escaped, so an ASCII
        address or number in binary data is still found."""
        if data_type != "bytea":
            return column
        return (
            f"(CASE WHEN (SELECT current_setting('server_encoding')) = 'UTF8' "
            f"AND encode({column}, 'hex') ~ {self.string(_UTF8_HEX)} "
            f"THEN convert_from({column}, 'UTF8') ELSE encode({column}, 'escape') END)"
        )
