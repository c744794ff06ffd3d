"""The error tree is closed: every error class lives in ``errors.py``, its docstring draws all of them,
and the documented exit codes are built from the classes, so none can be missing."""

from __future__ import annotations

import importlib
import pkgutil

import dataferry
from dataferry import errors
from dataferry.errors import EXIT_CODES, FerryError


def _all_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(dataferry.__path__, "dataferry.")]
    return [n for n in names if not n.endswith(".__main__")]  # __main__ runs the command


def _subclasses() -> set[type[FerryError]]:
    for name in _all_modules():
        importlib.import_module(name)
    found: set[type[FerryError]] = set()
    todo = [FerryError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in found and sub.__module__.startswith("dataferry"):
                found.add(sub)
                todo.append(sub)
    return found


def test_every_error_class_is_defined_in_errors_py() -> None:
    elsewhere = sorted(
        f"{c.__module__}.{c.__qualname__}" for c in _subclasses() if c.__module__ != errors.__name__
    )
    assert not elsewhere, f"error classes outside dataferry.errors: {elsewhere}"


def test_exit_codes_cover_every_class() -> None:
    classes = {FerryError, *_subclasses()}
    missing = sorted(f"{c.__name__} ({c.exit_code})" for c in classes if c.exit_code not in EXIT_CODES)
    assert not missing
    assert EXIT_CODES[0] == "success"
    assert list(EXIT_CODES) == sorted(EXIT_CODES)


def test_the_docstring_draws_every_class() -> None:
    doc = errors.__doc__ or ""
    for cls in {FerryError, *_subclasses()}:
        assert f"── {cls.__name__} " in doc or cls is FerryError, cls.__name__
        line = next(line for line in doc.splitlines() if f" {cls.__name__} " in f" {line.strip(' │├└─')} ")
        assert f" {cls.exit_code}  " in line, (cls.__name__, line)


def test_a_subclass_keeping_its_code_keeps_its_meaning() -> None:
    assert errors.StoreError.meaning == errors.EngineError.meaning == EXIT_CODES[1]
    assert errors.ChecksFailed.meaning == EXIT_CODES[8]
