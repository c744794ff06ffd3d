"""Client-side encryption of data objects with age (https://age-encryption.org), through ``pyrage``,
the Python binding of rage: a maintained implementation, no cryptography written here.

A backup into an environment with ``encryption = { recipients = [...] }`` encrypts the compressed
dump for every recipient (``encrypting``); a restore decrypts it with the identity named by
``identity_env`` or ``identity_file`` (``decrypting``). Both stream: pyrage's ``encrypt_io`` and
``decrypt_io`` push 64 KiB chunks from a worker thread through a bounded queue, so memory does not
grow with the dump (invariant 8). The stored bytes are plain age files: ``age -d -i KEY | zstd -d``
reads them, and dataferry reads what ``age -r`` wrote.

Identities are secrets (invariant 7): they are read from their variable or file only when needed,
held in an ``Identities`` whose repr shows none of them, and never put in a message, a log line or
argv. Errors here name the variable or the file, never the value.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

import pyrage
from pyrage import ssh, x25519

from dataferry.errors import ConfigError, NotReady, VerificationFailed
from dataferry.streams import ByteSource, Reader

if TYPE_CHECKING:
    from io import BufferedIOBase

#: What ``DataObject.encryption`` records as the format.
AGE = "age"
#: Appended to an encrypted data object's key (``<id>.<format>.zst.age``), as the age tool names files.
SUFFIX = ".age"

_QUEUE_CHUNKS = 16  # x 64 KiB: the most a pump holds between its thread and its reader
_POLL = 0.2
_CLOSE_WAIT = 30.0


def parse_recipients(values: Sequence[str], where: str) -> list[object]:
    """pyrage recipients for ``values`` (``age1...`` or ``ssh-ed25519 ...``/``ssh-rsa ...`` public
    keys); a bad one is ``ConfigError`` naming it (a recipient is public)."""
    parsed: list[object] = []
    for value in values:
        text = value.strip()
        try:
            if text.startswith("ssh-"):
                parsed.append(ssh.Recipient.from_str(text))
            else:
                parsed.append(x25519.Recipient.from_str(text))
        except pyrage.RecipientError:
            raise ConfigError(
                f"{where}: {text[:80]!r} is not an age recipient",
                hint="give age public keys (age1..., from 'age-keygen -y KEYFILE') or SSH public keys",
            ) from None
    if not parsed:
        raise ConfigError(f"{where}: no recipients", hint="encryption needs at least one age public key")
    return parsed


def read_recipients_file(path: Path, where: str) -> list[str]:
    """The recipients listed in ``path``, one a line (``#`` comments and blank lines skipped), as
    ``age -R`` reads them."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read recipients file {path}: {exc.strerror}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


class Identities:
    """Secret age identities, held in memory only while a restore needs them. The repr says where
    they came from and how many there are, never what they are."""

    def __init__(self, keys: list[object], source: str) -> None:
        self._keys = keys
        self.source = source

    def __repr__(self) -> str:
        return f"Identities({len(self._keys)} from {self.source})"

    __str__ = __repr__

    def keys(self) -> list[object]:
        """The pyrage identities (for ``decrypt_io``)."""
        return self._keys


def load_identities(*, env: str | None, file: Path | None, where: str) -> Identities:
    """The identities in variable ``env`` or in ``file`` (an age identity file, or an OpenSSH private
    key). Missing or unusable: ``NotReady`` (exit 3) naming the variable or file, not its content."""
    if env:
        text = os.environ.get(env, "")
        source = f"environment variable {env}"
        if not text.strip():
            raise NotReady(
                f"{where}: the age identity variable {env} is not set",
                hint=f"export {env} with the age secret key (the contents of the key file), or "
                "set identity_file",
            )
    elif file is not None:
        source = f"identity file {file}"
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise NotReady(f"{where}: cannot read the age {source}: {exc.strerror}") from None
    else:
        raise NotReady(
            f"{where}: the artifact is encrypted and no age identity is configured",
            hint="set encryption.identity_env (or identity_file) for the environment it comes from "
            "(dataferry pull: --identity-env or --identity-file)",
        )
    return Identities(_parse_identities(text, source, where), source)


def _parse_identities(text: str, source: str, where: str) -> list[object]:
    if text.lstrip().startswith("-----BEGIN"):
        try:
            return [ssh.Identity.from_buffer(text.encode())]
        except pyrage.IdentityError:
            raise NotReady(f"{where}: the {source} is not a usable SSH private key") from None
    keys: list[object] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            # The line is (part of) a secret: say where it is, never what it is.
            raise NotReady(
                f"{where}: line {number} of the {source} is not an age identity",
                hint="it must hold AGE-SECRET-KEY-1... lines, as 'age-keygen' writes them",
            ) from None
    if not keys:
        raise NotReady(f"{where}: the {source} holds no age identity")
    return keys


class _Cancelled(Exception):
    """The reader was closed before the pump finished: stop quietly."""


class _Pump(Reader):
    """A reader of what ``work(source, sink)`` writes, run on a worker thread through a bounded queue.

    An exception the source raises (a failed dump, a store error) is re-raised here as itself;
    pyrage's own errors go through ``classify``. ``close`` stops the worker and waits for it.
    """

    def __init__(self, src: ByteSource, work: object, classify: object) -> None:
        self._src = src
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._source_error: BaseException | None = None
        self._overflow = b""  # what a source returned beyond the size pyrage asked for
        self._buffer = b""
        self._done = False
        self._work = work
        self._classify = classify
        self._thread = threading.Thread(target=self._run, name="dataferry-age", daemon=True)
        self._thread.start()

    # -- the worker's side: pyrage reads ``self`` through ``_In`` and writes through ``_Out`` --
    def _run(self) -> None:
        try:
            self._work(_In(self), _Out(self))  # type: ignore[operator]
            self._put(None)
        except _Cancelled:
            return
        except BaseException as exc:  # handed to the reader, which raises it in its own thread
            if self._stop.is_set():
                return
            self._put(self._source_error or exc)

    def _pull(self, n: int) -> bytes:
        if self._stop.is_set():
            raise _Cancelled()
        if self._overflow:  # pyrage takes at most what it asked for
            data, self._overflow = self._overflow[:n], self._overflow[n:]
            return data
        try:
            data = self._src.read(n)
        except BaseException as exc:
            self._source_error = exc
            raise
        if n >= 0 and len(data) > n:
            data, self._overflow = data[:n], data[n:]
        return data

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
        raise _Cancelled()

    # -- the reader's side --
    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of the pump's output (all of it when negative); b'' at its end."""
        parts = [self._buffer]
        have = len(self._buffer)
        while not self._done and (n < 0 or have < n):
            item = self._queue.get()
            if item is None:
                self._done = True
                self._thread.join()
            elif isinstance(item, BaseException):
                self._done = True
                self._thread.join()
                raise self._classify(item)  # type: ignore[operator]
            else:
                parts.append(item)
                have += len(item)
        self._buffer = b""
        if 0 <= n < have:  # cut the last chunk, not the joined whole: a slice of that is one more copy
            keep = len(parts[-1]) - (have - n)
            parts[-1], self._buffer = parts[-1][:keep], parts[-1][keep:]
        return b"".join(parts)  # one copy per read (an 8 MiB S3 part), not one per chunk

    def close(self) -> None:
        """Stop the worker (if it still runs) and wait for it: it stops at its next read or write.
        A worker stuck in a read of a stalled source is left behind (a daemon thread) after
        ``_CLOSE_WAIT`` rather than hanging the run that is ending."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join(timeout=_CLOSE_WAIT)


class _In:
    """pyrage's input: reads the pump's source on the worker thread."""

    def __init__(self, pump: _Pump) -> None:
        self._pump = pump

    def read(self, n: int = -1) -> bytes:
        return self._pump._pull(n)

    def readinto(self, buf: memoryview) -> int:
        data = self._pump._pull(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Out:
    """pyrage's output: hands each chunk to the reader through the bounded queue."""

    def __init__(self, pump: _Pump) -> None:
        self._pump = pump

    def write(self, data: bytes) -> int:
        self._pump._put(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing buffered here."""


def _encrypt_error(exc: BaseException) -> BaseException:
    return exc


@contextlib.contextmanager
def encrypting(src: ByteSource, recipients: list[object]) -> Iterator[BinaryIO]:
    """A reader of ``src`` encrypted in the age format for every recipient, streaming."""

    def work(source: object, sink: object) -> None:
        pyrage.encrypt_io(cast("BufferedIOBase", source), cast("BufferedIOBase", sink), recipients)  # type: ignore[arg-type]

    pump = _Pump(src, work, _encrypt_error)
    try:
        yield cast(BinaryIO, pump)
    finally:
        pump.close()


@contextlib.contextmanager
def decrypting(src: ByteSource, identities: Identities, name: str) -> Iterator[BinaryIO]:
    """A reader of age-encrypted ``src`` decrypted with ``identities``, streaming; every 64 KiB chunk
    is authenticated as it is read, so damaged ciphertext raises ``VerificationFailed`` before the
    damaged data is used; no matching identity is ``NotReady``."""

    def work(source: object, sink: object) -> None:
        pyrage.decrypt_io(cast("BufferedIOBase", source), cast("BufferedIOBase", sink), identities.keys())  # type: ignore[arg-type]

    pump = _Pump(src, work, lambda exc: decrypt_error(exc, name, identities))
    try:
        yield cast(BinaryIO, pump)
    finally:
        pump.close()


def decrypt_error(exc: BaseException, name: str, identities: Identities) -> BaseException:
    """What a decryption failure means for the user: the wrong key (exit 3) or damaged data (exit 7).
    pyrage's messages never hold key material, but only its kind of failure is reported anyway."""
    if not isinstance(exc, (pyrage.DecryptError, OSError)):
        return exc  # the source failed (a store error): report it as itself
    if isinstance(exc, pyrage.DecryptError) and "no matching keys" in str(exc).lower():
        return NotReady(
            f"object {name} is not encrypted for the age identity in the {identities.source}",
            hint="use an identity whose public key is among the manifest's recipients "
            "('dataferry list --json' shows them); nothing was changed",
        )
    return VerificationFailed(
        f"object {name} is not a valid age file or its ciphertext is damaged",
        hint="the artifact was refused and nothing was changed; restore an older artifact "
        "with --artifact KEY, or take a new backup",
    )


def check_identity(src: ByteSource, identities: Identities, name: str) -> None:
    """Decrypt the start of ``src`` to prove an identity matches before anything is destroyed
    (invariant 1): ``NotReady`` if none does, ``VerificationFailed`` if the header is damaged."""
    with decrypting(src, identities, name) as plain:
        plain.read(1)
