"""One shell word of a GOV.UK job file, read the way ``source`` would read it, without running or
expanding anything: quotes and backslashes are resolved, ``$`` and backticks are refused."""

from __future__ import annotations

from dataferry.errors import ConfigError


def shell_word(text: str, *, where: str) -> str:
    """The value of one shell word (quotes and backslashes resolved), refusing any expansion.

    Whatever follows the word must be blank or a ``#`` comment.
    """
    out: list[str] = []
    i, n = 0, len(text)
    while i < n and not text[i].isspace():
        ch = text[i]
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ConfigError(f"{where}: unterminated single quote")
            out.append(text[i + 1 : end])
            i = end + 1
        elif ch == '"':
            i = _double_quoted(text, i + 1, out, where)
        elif ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
        elif ch in "$`":
            raise _expansion(where)
        elif ch in ";&|<>()":
            raise ConfigError(f"{where}: shell syntax {ch!r} is not supported in a job file")
        else:
            out.append(ch)
            i += 1
    tail = text[i:].strip()
    if tail and not tail.startswith("#"):
        raise ConfigError(
            f"{where}: unexpected text after the value: {tail[:20]!r}",
            hint='quote values that contain spaces: key="a value"',
        )
    return "".join(out)


def _double_quoted(text: str, i: int, out: list[str], where: str) -> int:
    """Append a double-quoted string starting after its quote; return the index after it."""
    while i < len(text):
        ch = text[i]
        if ch == '"':
            return i + 1
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$`':
            out.append(text[i + 1])
            i += 2
            continue
        if ch in "$`":
            raise _expansion(where)
        out.append(ch)
        i += 1
    raise ConfigError(f"{where}: unterminated double quote")


def _expansion(where: str) -> ConfigError:
    return ConfigError(
        f"{where}: variable or command expansion ($, `) is not supported",
        hint="write the value literally; dataferry reads job files, it does not run them",
    )
