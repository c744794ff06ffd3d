"""The schema objects of a dump (triggers, views, routines, events): kept aside while it loads, to
re-create them in the live schema after the swap."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from dataferry.engines.mysql.dumpfile import Part, unquote_ident

_DEFINER_RE = re.compile(rb"(/\*!50017 |/\*!50117 |/\*!50013 |^CREATE )DEFINER=`(?:[^`]|``)*`@`(?:[^`]|``)*`")
_EVENT_STATUS_RE = re.compile(rb"( ON COMPLETION (?:NOT )?PRESERVE )(?:ENABLE|DISABLE ON SLAVE|DISABLE)\b")
_ROUTINE_DROP_RE = re.compile(rb"/\*!50003 DROP (PROCEDURE|FUNCTION) IF EXISTS `((?:[^`]|``)*)` \*/;")
_EVENT_DROP_RE = re.compile(rb"/\*!50106 DROP EVENT IF EXISTS `((?:[^`]|``)*)` \*/;")
_VIEW_DROP_PREFIX = b"/*!50001 DROP VIEW IF EXISTS "
_VIEW_CREATE = b"/*!50001 CREATE ALGORITHM="


def strip_definer(line: bytes) -> bytes:
    """``DEFINER=`user`@`host``` becomes ``DEFINER=CURRENT_USER``: the restoring account, which
    always exists on the target (production's accounts usually do not)."""
    return _DEFINER_RE.sub(rb"\1DEFINER=CURRENT_USER", line)


def disable_event(line: bytes) -> bytes:
    """An event created in the shadow must not run there: its status becomes DISABLE."""
    return _EVENT_STATUS_RE.sub(rb"\1DISABLE", line, count=1)


def _text(b: bytes | bytearray) -> str:
    return bytes(b).decode("utf-8", "surrogateescape")


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


@dataclass
class SchemaObjects:
    """The parts of a dump that are not tables: kept to re-create them in the live schema.

    Everything here is schema text (no rows), so it is small whatever the size of the data.
    """

    preamble: bytearray = field(default_factory=bytearray)
    postamble: bytearray = field(default_factory=bytearray)
    triggers: bytearray = field(default_factory=bytearray)
    standins: dict[str, bytearray] = field(default_factory=dict)
    views: dict[str, bytearray] = field(default_factory=dict)
    routines: bytearray = field(default_factory=bytearray)
    events: bytearray = field(default_factory=bytearray)
    routine_names: list[tuple[str, str]] = field(default_factory=list)
    event_names: list[str] = field(default_factory=list)

    def add(self, part: Part, name: str, line: bytes) -> bytes:
        """Keep what ``line`` contributes; return the line as the shadow must run it."""
        if part is Part.PREAMBLE:
            if not line.startswith(b"--"):
                self.preamble += line
        elif part is Part.POSTAMBLE:
            self.postamble += line
        elif part is Part.STANDIN:
            self.standins.setdefault(name, bytearray()).extend(line)
        elif part in (Part.TRIGGERS, Part.EVENTS, Part.ROUTINES, Part.VIEW):
            return self._add_object(part, name, strip_definer(line))
        return line

    def _add_object(self, part: Part, name: str, line: bytes) -> bytes:
        if part is Part.TRIGGERS:
            self.triggers += line
        elif part is Part.VIEW:
            self.views.setdefault(name, bytearray()).extend(line)
        elif part is Part.ROUTINES:
            self.routines += line
            m = _ROUTINE_DROP_RE.match(line)
            if m:
                self.routine_names.append((m.group(1).decode(), unquote_ident(m.group(2))))
        else:
            self.events += line
            m = _EVENT_DROP_RE.match(line)
            if m:
                self.event_names.append(unquote_ident(m.group(1)))
            return disable_event(line)
        return line

    def shadow_script(self) -> bytes:
        """Triggers, events (disabled), routines and views for the shadow after a parallel load."""
        events = b"".join(disable_event(line) for line in bytes(self.events).splitlines(keepends=True))
        views = b"".join(bytes(v) for v in self.views.values())
        return bytes(self.preamble + self.triggers) + events + bytes(self.routines) + views + self.postamble

    def as_in_shadow(self, views: set[str], triggers: bytes) -> SchemaObjects:
        """These objects as the shadow holds them at the swap: sanitisation may have dropped views,
        triggers or whole tables (with their triggers) since the dump was loaded, and the swap must
        install what was verified, not what the dump had. ``triggers`` is the shadow's own trigger
        SQL (``mysqldump --triggers``); ``views`` the views the shadow still has."""
        return dataclasses.replace(
            self,
            triggers=bytearray(triggers),
            standins={k: v for k, v in self.standins.items() if k in views},
            views={k: v for k, v in self.views.items() if k in views},
        )

    def live_script(self, existing_views: set[str]) -> bytes:
        """What re-creates the objects in the live schema right after the tables moved in.

        Views are replaced in place (CREATE OR REPLACE), never dropped, so a reader never finds
        one missing; a stand-in is created first for each view the live schema lacks, so views
        may refer to views defined after them (as the dump itself does).
        """
        out = bytearray(self.preamble)
        for name, block in self.standins.items():
            if name not in existing_views:
                out += block
        out += self.triggers
        for block in self.views.values():
            out += replace_view(bytes(block))
        out += self.routines + self.events + self.postamble
        return bytes(out)

    def to_json(self) -> str:
        """Serialised as JSON text (kept for tools and tests that store the objects aside)."""
        data: dict[str, Any] = {
            k: _text(getattr(self, k)) for k in ("preamble", "postamble", "triggers", "routines", "events")
        }
        data["standins"] = {k: _text(v) for k, v in self.standins.items()}
        data["views"] = {k: _text(v) for k, v in self.views.items()}
        data["routine_names"] = self.routine_names
        data["event_names"] = self.event_names
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> SchemaObjects:
        """The inverse of ``to_json``."""
        data = json.loads(text)

        def raw(key: str) -> bytearray:
            """The bytes stored under ``key``."""
            return bytearray(_bytes(data[key]))

        obj = cls(raw("preamble"), raw("postamble"), raw("triggers"))
        obj.routines, obj.events = raw("routines"), raw("events")
        obj.standins = {k: bytearray(_bytes(v)) for k, v in data["standins"].items()}
        obj.views = {k: bytearray(_bytes(v)) for k, v in data["views"].items()}
        obj.routine_names = [(str(a), str(b)) for a, b in data["routine_names"]]
        obj.event_names = [str(n) for n in data["event_names"]]
        return obj


def replace_view(block: bytes) -> bytes:
    """A final-view block rewritten to ``CREATE OR REPLACE`` without its ``DROP VIEW``."""
    if _VIEW_CREATE not in block:
        return block  # not the layout we know: keep the tool's own DROP + CREATE
    lines = [ln for ln in block.splitlines(keepends=True) if not ln.startswith(_VIEW_DROP_PREFIX)]
    return b"".join(lines).replace(_VIEW_CREATE, b"/*!50001 CREATE OR REPLACE ALGORITHM=", 1)
