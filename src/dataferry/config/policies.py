"""What an environment's store does to its artifacts beyond holding them: client-side encryption
(``encryption``) and retention (``retention``). Models only; ``dataferry.encryption`` and
``dataferry.ops.prune`` do the work.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pyrage import RecipientError, ssh, x25519


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EncryptionConfig(_Model):
    """``encryption = { recipients = ["age1..."], identity_env = "..." }``: backups into this
    environment's store are encrypted with age for every recipient; restores from it decrypt with
    the identity in ``identity_env`` (or ``identity_file``). The identity itself never goes here."""

    recipients: list[str] = Field(
        default_factory=list, description="age public keys (age1...) or SSH public keys to encrypt for"
    )
    recipients_file: str | None = Field(None, description="a file of recipients, one a line (age -R)")
    identity_env: str | None = Field(None, description="environment variable holding the age secret key")
    identity_file: str | None = Field(None, description="path of an age identity file (0600)")

    @field_validator("recipients")
    @classmethod
    def _public_keys(cls, values: list[str]) -> list[str]:
        for value in values:
            if value.strip().startswith("AGE-SECRET-KEY-"):
                # Say what it is without repeating it: the file must not hold secrets.
                raise ValueError(
                    "a recipient is an age secret key: put public keys (age1...) here and the secret "
                    "in the variable named by identity_env"
                )
            try:
                if value.strip().startswith("ssh-"):
                    ssh.Recipient.from_str(value.strip())
                else:
                    x25519.Recipient.from_str(value.strip())
            except RecipientError:
                raise ValueError(f"{value[:80]!r} is not an age recipient (age1... or ssh-...)") from None
        return values

    @model_validator(mode="after")
    def _something(self) -> EncryptionConfig:
        if not (self.recipients or self.recipients_file or self.identity_env or self.identity_file):
            raise ValueError("give recipients (to encrypt backups) and/or identity_env (to decrypt restores)")
        if self.identity_env and self.identity_file:
            raise ValueError("give identity_env or identity_file, not both")
        return self

    @property
    def encrypts(self) -> bool:
        """True when backups into the store are encrypted."""
        return bool(self.recipients or self.recipients_file)


class RetentionConfig(_Model):
    """``retention = { keep_last = N, keep_daily = N, keep_weekly = N, keep_monthly = N }``: restic's
    ``forget`` policy on artifact timestamps (UTC). An artifact kept by any rule is kept."""

    keep_last: int = Field(0, ge=0, description="the newest N artifacts")
    keep_daily: int = Field(
        0, ge=0, description="the newest artifact of each of the last N days that have one"
    )
    keep_weekly: int = Field(0, ge=0, description="the same per ISO week")
    keep_monthly: int = Field(0, ge=0, description="the same per calendar month")

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionConfig:
        if not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly):
            raise ValueError(
                "a retention policy that keeps nothing would delete every artifact; set a keep_* above 0"
            )
        return self
