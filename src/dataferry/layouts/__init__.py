"""Layouts: how an environment's store names, lists, chooses, encodes and commits artifacts.

A ``Layout`` is bound to one database in one store. The backup and restore pipelines
(``dataferry.pipeline``) are written once against this protocol; a layout only says:

- ``encoding(engine)``: how the data object is encoded (codec, level, the dump tool's own options);
- ``new_key(engine, encoding)``: a fresh id and data key, never one that is taken;
- ``publish(manifest)``: commit an artifact whose data object is already written (manifest last;
  a layout with a pointer moves it after the manifest);
- ``select(...)``/``list_manifests()``: read what is committed (a stand-in manifest, with an empty sha256, for
  a dump another tool wrote, where the layout accepts those);
- ``check_readable(manifest, engine)``: a cheap look at the data before anything is destroyed;
- ``orphans()``: data objects no manifest commits, for ``cleanup`` (None: the layout cannot tell).

Adding a layout is one new module with one class, and one line in ``_LAYOUTS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar, Protocol

from dataferry.artifacts import Manifest, OnDamaged
from dataferry.config import Config
from dataferry.engines import DEFAULT_DUMP, DumpOptions, DumpsObjects, Engine
from dataferry.errors import ConfigError
from dataferry.progress import Reporter
from dataferry.stores import ObjectInfo, Store, open_store


@dataclass(frozen=True)
class Encoding:
    """How a backup's data object is made: ``compression`` (see ``codecs``) at ``level``, with the
    dump tool asked for ``dump``."""

    compression: str
    level: int = 0
    dump: DumpOptions = field(default=DEFAULT_DUMP)
    #: one object per table where the engine can (``DumpsObjects``): restored in parallel, unspooled
    objects: bool = False

    def by_objects(self, engine: Engine) -> bool:
        """True when a backup of ``engine``'s with this encoding is an artifact of many objects."""
        return self.objects and isinstance(engine, DumpsObjects)


@dataclass(frozen=True)
class NewArtifact:
    """A fresh artifact's id, its data object's key and its creation time."""

    id: str
    key: str
    created: datetime


class Layout(Protocol):
    """How one database's artifacts live in one store."""

    name: ClassVar[str]
    store: Store
    database: str

    def encoding(self, engine: Engine, level: int) -> Encoding:
        """How a backup of ``engine``'s dumps is encoded here (``level``: the configured one)."""
        ...

    def new_key(self, engine: Engine, encoding: Encoding) -> NewArtifact:
        """A data key no artifact uses yet."""
        ...

    def manifest_extra(self, new: NewArtifact) -> dict[str, object]:
        """Facts the layout records in the manifest (where it put the manifest, its pointer)."""
        ...

    def publish(self, manifest: Manifest) -> None:
        """Commit an artifact whose data object is written: the manifest (and pointer) last."""
        ...

    def select(
        self, engine: Engine, *, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> Manifest:
        """The artifact asked for: explicit, else the newest at or before ``at``, else the latest."""
        ...

    def list_manifests(self, engine: Engine, on_damaged: OnDamaged | None = None) -> list[Manifest]:
        """Every artifact, newest first; a damaged manifest is skipped and passed to ``on_damaged``
        (so one read of the store lists both)."""
        ...

    def check_readable(self, manifest: Manifest, engine: Engine) -> None:
        """Raise ``VerificationFailed`` if the data is plainly not a dump ``engine`` can restore."""
        ...

    def prefix(self) -> str:
        """The key prefix under which this database's objects are written."""
        ...

    def orphans(self) -> list[ObjectInfo] | None:
        """Data objects no manifest commits (interrupted backups); None if this layout cannot tell
        them from dumps other tools wrote."""
        ...


_LAYOUTS: dict[str, str] = {
    "dataferry": "dataferry.layouts.dataferry:DataferryLayout",
    "govuk": "dataferry.layouts.govuk:GovukLayout",
    "govuk-puppet": "dataferry.layouts.govuk_puppet:GovukPuppetLayout",
}


def layout_names() -> list[str]:
    """The layouts a store can have."""
    return sorted(_LAYOUTS)


def store_for(cfg: Config, environment: str) -> Store:
    """The store of an environment."""
    store_cfg = cfg.environment(environment).store
    url = store_cfg.url
    if "://" not in url:
        url = str(cfg.resolve_path(url))
    return open_store(url, store_cfg.options())


def layout_for(cfg: Config, environment: str, database: str, store: Store | None = None) -> Layout:
    """The layout of ``database``'s artifacts in ``environment``'s store."""
    name = cfg.environment(environment).store.layout
    target = _LAYOUTS.get(name)
    if target is None:
        raise ConfigError(f"unknown store layout {name!r}", hint=f"known: {', '.join(layout_names())}")
    module, _, cls = target.partition(":")
    factory = getattr(importlib.import_module(module), cls)
    layout: Layout = factory.for_config(cfg, environment, database, store or store_for(cfg, environment))
    return layout
