"""The engine registry and the helpers written once around the Engine protocol."""

from __future__ import annotations

import pytest

from dataferry.config import DatabaseRef
from dataferry.engines import (
    DescribesDumps,
    RunsSql,
    Shadow,
    engine_names,
    get_engine,
    manifest_extra,
    split_target,
)
from dataferry.errors import ConfigError

REF = DatabaseRef(name="app", environment="staging", engine="sqlite", url="sqlite:///tmp/app.db")


def test_a_shadow_is_a_target_of_its_own_ref() -> None:
    """``split_target`` gives (ref, None) for a live database and (shadow.ref, shadow) for a shadow."""
    shadow = Shadow(ref=REF, name="/tmp/app.db.shadow")
    assert split_target(REF) == (REF, None)
    assert split_target(shadow) == (REF, shadow)


def test_shadow_state_is_engine_private_and_not_shown() -> None:
    """Engine state rides on the shadow, out of its repr and its equality."""
    a = Shadow(ref=REF, name="s", state={"secret": "engine stuff"})
    assert "engine stuff" not in repr(a)
    assert a == Shadow(ref=REF, name="s")


def test_registry_names_and_unknown_engine() -> None:
    """The registry lists its engines, and an unknown name is a ConfigError naming them."""
    assert engine_names() == ["mysql", "postgresql", "sqlite"]
    with pytest.raises(ConfigError, match="not supported") as exc:
        get_engine("mongodb")
    assert "postgresql" in (exc.value.hint or "")


def test_optional_capabilities_are_declared() -> None:
    """SQL engines run SQL; only MySQL describes its dumps; manifest_extra is {} for the others."""
    sqlite = get_engine("sqlite")
    assert isinstance(sqlite, RunsSql)
    assert not isinstance(sqlite, DescribesDumps)
    assert manifest_extra(sqlite, REF) == {}
    pytest.importorskip("pymysql")
    assert isinstance(get_engine("mysql"), DescribesDumps)
    assert isinstance(get_engine("postgresql"), RunsSql)
