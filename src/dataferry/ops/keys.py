"""Client-side encryption policy: which recipients a backup encrypts for, and which identity a
restore decrypts with, checked before anything is destroyed (invariant 1). The mechanism is
``dataferry.encryption``; the pipeline only encrypts or decrypts what it is handed.
"""

from __future__ import annotations

from dataferry import encryption
from dataferry.artifacts import Manifest
from dataferry.config import Config
from dataferry.errors import ConfigError, FerryError
from dataferry.layouts import Layout


def recipients_for(cfg: Config, environment: str) -> tuple[str, ...]:
    """The age recipients backups into ``environment``'s store are encrypted for (none: plain).

    GOV.UK's layouts write exactly what GOV.UK's consumers read, which is never age: encryption
    there is refused rather than producing dumps their scripts cannot open.
    """
    env = cfg.environment(environment)
    if env.encryption is None or not env.encryption.encrypts:
        return ()
    where = f"environments.{environment}.encryption"
    if env.store.layout != "dataferry":
        raise ConfigError(
            f"{where}: the {env.store.layout} layout writes plain dumps for GOV.UK's scripts, which cannot "
            "read age files",
            hint="encrypt stores with the dataferry layout only",
        )
    values = list(env.encryption.recipients)
    if env.encryption.recipients_file:
        path = cfg.resolve_path(env.encryption.recipients_file)
        values += encryption.read_recipients_file(path, where)
    encryption.parse_recipients(values, where)  # every recipient checked before the dump starts
    return tuple(values)


def identities_for(
    cfg: Config, environment: str, layout: Layout, manifest: Manifest
) -> encryption.Identities | None:
    """The identities that decrypt ``manifest``'s data object (None when it is not encrypted),
    proven on the object's header: a missing or wrong identity is ``NotReady`` (exit 3) here, in
    the plan, before a shadow exists."""
    obj = manifest.objects[0]
    if obj.encryption is None:
        return None
    conf = cfg.environment(environment).encryption
    where = f"environments.{environment}.encryption"
    identities = encryption.load_identities(
        env=conf.identity_env if conf else None,
        file=cfg.resolve_path(conf.identity_file) if conf and conf.identity_file else None,
        where=where,
    )
    with layout.store.open(obj.key) as stored:
        encryption.check_identity(stored, identities, obj.key)
    return identities


def check_encryption(cfg: Config, environment: str) -> list[tuple[str, bool, str]]:
    """``dataferry check``'s findings on an environment's encryption: the recipients parse, the
    identity is there and is one. Never the identity itself."""
    conf = cfg.environment(environment).encryption
    if conf is None:
        return []
    what = f"encryption of {environment}"
    findings: list[tuple[str, bool, str]] = []
    try:
        recipients = recipients_for(cfg, environment)
        if recipients:
            findings.append((f"{what}: recipients", True, f"{len(recipients)} age recipient(s)"))
    except FerryError as exc:
        findings.append((f"{what}: recipients", False, exc.message))
    if conf.identity_env or conf.identity_file:
        try:
            identities = encryption.load_identities(
                env=conf.identity_env,
                file=cfg.resolve_path(conf.identity_file) if conf.identity_file else None,
                where=f"environments.{environment}.encryption",
            )
            findings.append((f"{what}: identity", True, f"from the {identities.source}"))
        except FerryError as exc:
            findings.append((f"{what}: identity", False, exc.message))
    return findings
