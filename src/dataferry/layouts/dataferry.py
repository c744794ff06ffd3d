"""dataferry's own layout: ``<database>/<id>.<format>.zst`` and ``<database>/<id>.manifest.json``.

The id is ``<YYYY-MM-DDTHHMMSSZ>-<database>`` (UTC; keys sort chronologically). The manifest is the
commit: "latest" is the newest manifest, never the newest data object (``artifacts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from dataferry import artifacts
from dataferry.artifacts import Manifest
from dataferry.config import Config
from dataferry.engines import DumpsObjects, Engine
from dataferry.layouts import Encoding, NewArtifact
from dataferry.progress import Reporter
from dataferry.stores import ObjectInfo, Store


@dataclass
class DataferryLayout:
    """One database's artifacts in dataferry's layout."""

    name: ClassVar[str] = "dataferry"
    store: Store
    database: str
    #: one object per table where the engine can (``artifact_format = "per-table"``)
    per_table: bool = True

    @classmethod
    def for_config(cls, cfg: Config, environment: str, database: str, store: Store) -> DataferryLayout:
        """The layout of a configured database (it needs nothing but the name)."""
        return cls(
            store=store, database=database, per_table=cfg.database(database).artifact_format == "per-table"
        )

    def encoding(self, engine: Engine, level: int) -> Encoding:
        """zstd at the configured level; the dump tool does not compress; one object per table
        where the engine can (PostgreSQL: restored in parallel straight from the store)."""
        return Encoding(compression="zstd", level=level, objects=self.per_table)

    def new_key(self, engine: Engine, encoding: Encoding) -> NewArtifact:
        """``<database>/<id>.<format>.zst``, with an id no artifact has; for an artifact of many
        objects, ``<database>/<id>.<format>``, the prefix of ``<name>.zst`` objects."""
        ident, created = artifacts.new_artifact_id(self.store, self.database)
        if isinstance(engine, DumpsObjects) and encoding.by_objects(engine):
            key = artifacts.data_key(self.database, ident, engine.objects_format)
        else:
            key = artifacts.data_key(self.database, ident, f"{engine.dump_format}.zst")
        return NewArtifact(id=ident, key=key, created=created)

    def manifest_extra(self, new: NewArtifact) -> dict[str, object]:
        """Nothing: the manifest's key follows from its id."""
        return {}

    def publish(self, manifest: Manifest) -> None:
        """Write the manifest: the single step that publishes the artifact."""
        artifacts.write_manifest(self.store, manifest)

    def select(
        self, engine: Engine, *, artifact: str | None, at: datetime | None, reporter: Reporter
    ) -> Manifest:
        """``artifacts.select``: by id or key, at or before a time, else the newest manifest; a
        damaged manifest is skipped with a warning."""

        def warn(d: artifacts.Damaged) -> None:
            reporter.warn(f"skipped the damaged manifest of artifact {d.id}: {d.reason}")

        return artifacts.select(self.store, self.database, artifact=artifact, at=at, on_damaged=warn)

    def list_manifests(self, engine: Engine, on_damaged: artifacts.OnDamaged | None = None) -> list[Manifest]:
        """Every readable manifest, newest first; damaged ones go to ``on_damaged``."""
        return list(artifacts.iter_manifests(self.store, self.database, on_damaged))

    def check_readable(self, manifest: Manifest, engine: Engine) -> None:
        """Nothing to sniff: the checksum is verified while the data streams in."""

    def prefix(self) -> str:
        """``<database>/``."""
        return f"{self.database}/"

    def orphans(self) -> list[ObjectInfo]:
        """Data objects without a manifest."""
        return artifacts.orphans(self.store, self.database)
