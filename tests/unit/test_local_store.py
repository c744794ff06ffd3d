"""LocalStore behaviour that only a filesystem has: odd paths, races with deletes, bad roots.

The behaviour every store shares is in ``tests/contract/test_store_contract.py``.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from dataferry.errors import ConfigError, FerryError, NotFound, StoreError
from dataferry.stores import local, open_store, put_bytes, read_bytes
from dataferry.stores.local import LocalStore


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A local store in a fresh directory."""
    return LocalStore(tmp_path / "store")


def test_urls() -> None:
    """``file:///path`` and plain paths both work; an empty path does not."""
    assert LocalStore.from_url("file:///srv/backups").root == Path("/srv/backups")
    assert isinstance(open_store("/srv/backups"), LocalStore)
    assert isinstance(open_store("relative/dir"), LocalStore)
    with pytest.raises(ConfigError):
        LocalStore.from_url("file://")
    with pytest.raises(ConfigError, match="ftp"):
        open_store("ftp://host/dir")


@pytest.mark.parametrize("key", ["", "/", "../escape", "a/../../escape", "a/./b"])
def test_keys_cannot_escape_the_root(store: LocalStore, key: str) -> None:
    """Keys are relative paths inside the root, never '.' or '..' tricks."""
    with pytest.raises(StoreError, match="invalid key"):
        put_bytes(store, key, b"x")


def test_leading_and_doubled_slashes_are_ignored(store: LocalStore) -> None:
    """'/a//b' and 'a/b' are the same object, as they are in S3 after the prefix."""
    put_bytes(store, "/a//b", b"x")
    assert read_bytes(store, "a/b") == b"x"


def test_temp_files_are_never_listed(store: LocalStore) -> None:
    """An upload in progress (a temp file) is not an object."""
    put_bytes(store, "db/real", b"x")
    (store.root / "db" / ".dataferry-tmp-abc123").write_bytes(b"half an upload")
    assert [o.key for o in store.list()] == ["db/real"]


def test_list_survives_objects_deleted_while_listing(store: LocalStore) -> None:
    """Another process deleting objects (cleanup, retention) during a listing is not an error."""
    for i in range(5):
        put_bytes(store, f"db/{i}", b"x")
    listing = store.list("db/")
    first = next(listing)
    for i in range(5):
        store.delete(f"db/{i}")
    rest = list(listing)
    assert first.key.startswith("db/")
    assert rest == []


def test_directories_are_not_objects(store: LocalStore) -> None:
    """The directory behind nested keys cannot be opened, and deleting it is a no-op."""
    put_bytes(store, "db/a/b", b"x")
    with pytest.raises(NotFound), store.open("db/a"):
        pass
    store.delete("db/a")
    assert read_bytes(store, "db/a/b") == b"x"


def test_key_below_an_object(store: LocalStore) -> None:
    """'a/b' when 'a' is an object: reading is NotFound, writing a clear StoreError."""
    put_bytes(store, "a", b"x")
    with pytest.raises(NotFound), store.open("a/b"):
        pass
    with pytest.raises(StoreError) as excinfo:
        put_bytes(store, "a/b", b"y")
    assert type(excinfo.value) is StoreError
    assert excinfo.value.hint
    store.delete("a/b")
    assert read_bytes(store, "a") == b"x"


def test_root_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    """A store URL pointing at a file fails with a StoreError and a hint, not an OSError."""
    root = tmp_path / "not-a-dir"
    root.write_text("oops")
    store = LocalStore(root)
    operations: dict[str, Callable[[], object]] = {
        "put": lambda: store.put("db/x", io.BytesIO(b"x")),
        "create_exclusive": lambda: store.create_exclusive("locks/x", b"x"),
    }
    for name, call in operations.items():
        with pytest.raises(FerryError) as excinfo:
            call()
        assert type(excinfo.value) is StoreError, name
        assert str(root) in excinfo.value.message, name
    assert list(store.list()) == []
    with pytest.raises(NotFound), store.open("db/x"):
        pass


def test_create_exclusive_leaves_no_temp_files(store: LocalStore) -> None:
    """Locks are written whole and linked into place; nothing else is left in the directory."""
    assert store.create_exclusive("locks/job", b"owner") is True
    assert store.create_exclusive("locks/job", b"other") is False
    assert sorted(p.name for p in (store.root / "locks").iterdir()) == ["job"]


def test_put_starts_writing_to_disk_as_it_goes(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every WRITE_BEHIND bytes the written range is handed to the kernel, once and in order,
    and the stored bytes are exactly the source's, whatever the source's read sizes."""
    monkeypatch.setattr(local, "WRITE_BEHIND", 1000)
    ranges: list[tuple[int, int]] = []
    real = local._start_writeback
    monkeypatch.setattr(
        local, "_start_writeback", lambda fd, off, n: (ranges.append((off, n)), real(fd, off, n))
    )
    data = bytes(range(256)) * 40  # 10240 bytes

    class Trickle:
        """Returns 333 bytes per read, as a pipe might."""

        def __init__(self) -> None:
            self.pos = 0

        def read(self, n: int = -1) -> bytes:
            chunk = data[self.pos : self.pos + 333]
            self.pos += len(chunk)
            return chunk

    info = store.put("db/a.bin", Trickle())
    assert info.size == len(data)
    assert read_bytes(store, "db/a.bin") == data
    assert ranges[0][0] == 0
    assert all(off == prev_off + prev_n for (prev_off, prev_n), (off, _) in itertools.pairwise(ranges))
    assert all(n >= 1000 for _, n in ranges)
    assert sum(n for _, n in ranges) > len(data) - 1000  # only the tail is left to the fsync
