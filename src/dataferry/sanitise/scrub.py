"""Database error messages without the data in them.

A failing UPDATE on unsanitised data gets messages such as ``Key (address)=(ann@mail.com) already
exists`` (PostgreSQL) or ``Duplicate entry 'ann@mail.com' for key 'address'`` (MariaDB), and the
statement echoed in ``LINE 1: ...``. Those messages end up in run records and alerts, so before one is
shown: context lines are dropped, quoted text is replaced by ``…`` unless it is a known table or column
name (or, double-quoted, has the shape of a name and does not follow ``": "``, where PostgreSQL puts
input values), and any secret (the salt) is replaced by ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Collection

_CONTEXT_LINE = re.compile(r"^\s*(DETAIL|CONTEXT|LINE \d+|QUERY|STATEMENT|HINT|WHERE)\b|^\s*\^\s*$")
_KEY_VALUE = re.compile(r"=\([^)]*\)")
_QUOTED = re.compile(r"(: )?('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`(?:[^`]|``)*`)")
#: PostgreSQL double-quotes names (tables, columns, constraints); an input value it quotes follows ": "
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$.]*$")
MAX_CHARS = 400


def scrub(message: str, identifiers: Collection[str] = (), secrets: Collection[str] = ()) -> str:
    """``message`` with personal data and secrets taken out; names in ``identifiers`` are kept."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    kept = [line for line in message.splitlines() if line.strip() and not _CONTEXT_LINE.match(line)]
    text = " ".join(line.strip() for line in kept)
    text = _KEY_VALUE.sub("=(…)", text)
    known = set(identifiers)

    def _quoted(m: re.Match[str]) -> str:
        colon, quoted = m.group(1) or "", m.group(2)
        inner = quoted[1:-1]
        is_name = inner in known or inner.split(".")[-1] in known
        if not is_name and quoted[0] == '"' and not colon and _NAME.match(inner):
            is_name = True
        return colon + (quoted if is_name else quoted[0] + "…" + quoted[-1])

    text = _QUOTED.sub(_quoted, text)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
