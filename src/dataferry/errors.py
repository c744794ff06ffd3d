"""One error root for everything dataferry reports to a user; every error class lives here.

The tree, with the exit code each class carries (the codes are a stable, documented API)::

    FerryError                      1  an operation failed (dump, restore, upload, swap)
    ├── ConfigError                 2  bad configuration file or command-line arguments
    ├── NotReady                    3  a tool, server or credential is missing or unusable
    ├── NotFound                    4  no such artifact, object, database or job
    ├── Held                        5  the job or environment is paused by a hold
    ├── LockBusy                    6  another run of the job, or restore of the database, holds its lock
    ├── VerificationFailed          7  checksum, size or manifest mismatch; artifact refused
    │   └── ManifestDamaged         7  ... a manifest is not one (skipped by listing and "latest")
    ├── SanitisationFailed          8  a sanitisation script or check failed; nothing published
    │   └── ChecksFailed            8  ... the rules ran but a check found something
    ├── Refused                     9  a safety rule refused the operation (protected environment)
    │   └── UntrustedArtifact       9  ... a "sanitised" artifact without a valid trusted signature
    ├── StoreError                  1  a store could not be read or written
    │   └── StoreUnavailable        1  ... and retrying may help (Transient)
    ├── EngineError                 1  a database tool or statement failed
    ├── Interrupted                 1  a job run was stopped by SIGTERM or SIGINT
    ├── RunTimedOut                 1  a job run took longer than its max_runtime
    └── HookFailed                  1  a job's ``hook:`` command exited non-zero

``Transient`` is a marker mixin: only errors carrying it are retried.
Anything raised that is not a ``FerryError`` is a bug and keeps its traceback.

``EXIT_CODES`` (what ``dataferry exit-codes`` prints and the docs list) is built from the classes:
each class that brings a new exit code says what it means in ``meaning``; a subclass that keeps its
parent's code keeps its parent's meaning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:  # for a type hint only: errors.py imports nothing of dataferry at run time
    from dataferry.artifacts import Sanitisation


class FerryError(Exception):
    """Root of every error dataferry reports; carries an exit code and a hint for the operator."""

    exit_code: ClassVar[int] = 1
    label: ClassVar[str] = "failed"
    meaning: ClassVar[str] = "an operation failed (dump, restore, upload, swap, database or store error)"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def report_lines(self) -> list[str]:
        """What the operator sees on stderr: ``error: ...``, a ``note: ...`` for each note added on
        the way out (a shadow that could not be dropped), and ``hint: ...`` when there is one."""
        lines = [f"error: {self.message}"]
        lines += [f"note: {note}" for note in getattr(self, "__notes__", [])]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return lines


class Transient:
    """Marker: retrying the operation may succeed (timeouts, throttling, connection resets)."""


class ConfigError(FerryError):
    """The configuration file or the command-line arguments are wrong; nothing was run."""

    exit_code = 2
    label = "configuration error"
    meaning = "bad configuration file or command-line arguments"


class NotReady(FerryError):
    """A required tool, server or credential is missing or unusable; nothing was changed."""

    exit_code = 3
    label = "not ready"
    meaning = "a tool, server or credential is missing or unusable"


class NotFound(FerryError):
    """An artifact, object, database or job that was asked for does not exist."""

    exit_code = 4
    label = "not found"
    meaning = "not found (artifact, object, database or job)"


class Held(FerryError):
    """The job, its environment or everything is paused by a hold."""

    exit_code = 5
    label = "held"
    meaning = "held: the job or its environment is paused"


class LockBusy(FerryError):
    """Another run of the same job holds its lock, or another restore of the same database holds
    that database's restore lock."""

    exit_code = 6
    label = "lock busy"
    meaning = (
        "lock busy: another run of the same job, or another restore of the same database, is in progress"
    )


class VerificationFailed(FerryError):
    """An artifact does not match its manifest (checksum, size, format); it was refused."""

    exit_code = 7
    label = "verification failed"
    meaning = "verification failed: an artifact does not match its manifest"


class ManifestDamaged(VerificationFailed):
    """A manifest that cannot be read as one (truncated, edited, or copied under another name).
    Listing and choosing the latest skip it; only asking for it by id fails."""


class SanitisationFailed(FerryError):
    """A sanitisation script or check failed; nothing was published or swapped in."""

    exit_code = 8
    label = "sanitisation failed"
    meaning = "sanitisation failed: a script or check failed, nothing was published"


class ChecksFailed(SanitisationFailed):
    """The rules ran but a check found something; ``report`` is the full (value-free) result."""

    def __init__(self, message: str, *, report: Sanitisation, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.report = report


class Refused(FerryError):
    """A safety rule refused the operation, such as a restore into a protected environment."""

    exit_code = 9
    label = "refused"
    meaning = (
        "refused by a safety rule (a protected environment, an unsanitised artifact, or a "
        '"sanitised" one without a valid trusted signature)'
    )


class UntrustedArtifact(Refused):
    """An artifact that says it is sanitised but carries no valid signature by a key the environment
    trusts (unsigned, edited after signing, or signed by another key): sanitisation's refusal."""

    label = "untrusted artifact"


class StoreError(FerryError):
    """A store could not be read or written."""

    label = "store error"


class StoreUnavailable(StoreError, Transient):
    """A store could not be reached; retrying may succeed."""


class EngineError(FerryError):
    """A database tool or statement failed; ``argv`` is already free of secrets."""

    label = "database error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        argv: list[str] | None = None,
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.argv = argv or []
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class Interrupted(FerryError):
    """The run was stopped by a signal (SIGTERM, SIGINT) before it finished."""

    label = "interrupted"


class RunTimedOut(FerryError):
    """The run took longer than the job's ``max_runtime`` and was stopped."""

    label = "timed out"


class HookFailed(FerryError):
    """A ``hook:`` command exited non-zero."""

    label = "hook failed"


def error_classes() -> list[type[FerryError]]:
    """``FerryError`` and every subclass, parents before their children."""
    found: list[type[FerryError]] = []
    todo: list[type[FerryError]] = [FerryError]
    while todo:
        cls = todo.pop(0)
        if cls not in found:
            found.append(cls)
            todo += cls.__subclasses__()
    return found


def _exit_codes() -> dict[int, str]:
    """``{code: meaning}``, 0 first; a code's meaning is that of its most general class."""
    codes: dict[int, str] = {}
    for cls in error_classes():
        codes.setdefault(cls.exit_code, cls.meaning)
    return {0: "success"} | dict(sorted(codes.items()))


EXIT_CODES: dict[int, str] = _exit_codes()
