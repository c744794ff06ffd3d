"""One error root for everything dataferry reports to a user.

The tree, with the exit code each class carries (the codes are a stable, documented API)::

    FerryError                      1  an operation failed (dump, restore, upload, swap)
    ├── ConfigError                 2  bad configuration file or command-line arguments
    ├── NotReady                    3  a tool, server or credential is missing or unusable
    ├── NotFound                    4  no such artifact, object, database or job
    ├── Held                        5  the job or environment is paused by a hold
    ├── LockBusy                    6  another run of the same job holds the lock
    ├── VerificationFailed          7  checksum, size or manifest mismatch; artifact refused
    ├── SanitisationFailed          8  a sanitisation script or check failed; nothing published
    ├── Refused                     9  a safety rule refused the operation (protected environment)
    └── StoreError                  1  a store could not be read or written
        └── StoreUnavailable        1  ... and retrying may help (Transient)

``Transient`` is a marker mixin: only errors carrying it are retried.
Anything raised that is not a ``FerryError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import ClassVar


class FerryError(Exception):
    """Root of every error dataferry reports; carries an exit code and a hint for the operator."""

    exit_code: ClassVar[int] = 1
    label: ClassVar[str] = "failed"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class Transient:
    """Marker: retrying the operation may succeed (timeouts, throttling, connection resets)."""


class ConfigError(FerryError):
    """The configuration file or the command-line arguments are wrong; nothing was run."""

    exit_code = 2
    label = "configuration error"


class NotReady(FerryError):
    """A required tool, server or credential is missing or unusable; nothing was changed."""

    exit_code = 3
    label = "not ready"


class NotFound(FerryError):
    """An artifact, object, database or job that was asked for does not exist."""

    exit_code = 4
    label = "not found"


class Held(FerryError):
    """The job, its environment or everything is paused by a hold."""

    exit_code = 5
    label = "held"


class LockBusy(FerryError):
    """Another run of the same job holds its lock."""

    exit_code = 6
    label = "lock busy"


class VerificationFailed(FerryError):
    """An artifact does not match its manifest (checksum, size, format); it was refused."""

    exit_code = 7
    label = "verification failed"


class SanitisationFailed(FerryError):
    """A sanitisation script or check failed; nothing was published or swapped in."""

    exit_code = 8
    label = "sanitisation failed"


class Refused(FerryError):
    """A safety rule refused the operation, such as a restore into a protected environment."""

    exit_code = 9
    label = "refused"


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


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "an operation failed (dump, restore, upload, swap, database or store error)",
    2: "bad configuration file or command-line arguments",
    3: "a tool, server or credential is missing or unusable",
    4: "not found (artifact, object, database or job)",
    5: "held: the job or its environment is paused",
    6: "lock busy: another run of the same job is in progress",
    7: "verification failed: an artifact does not match its manifest",
    8: "sanitisation failed: a script or check failed, nothing was published",
    9: "refused by a safety rule (for example a protected environment)",
}
