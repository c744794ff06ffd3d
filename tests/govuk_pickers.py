"""Test doubles of how GOV.UK's own scripts pick "the latest dump" in a bucket directory.

Written from reading the public scripts (not copied), each as a function over the lines a listing
prints, so that one double serves moto's S3 and a local directory alike:

- ``puppet_pick``: ``govuk_env_sync.sh``'s ``get_timestamp_s3`` (govuk-puppet,
  ``modules/govuk_env_sync/files/govuk_env_sync.sh``)::

      timestamp="$(aws s3 ls "s3://${url}/${path}/" | grep "\\-${database}\\." | tail -1 \\
                   | grep -o '<YYYY-MM-DDTHH:MM:SS>')"
      filename="${timestamp}-${database}.gz"

  ``set -o pipefail`` and the ERR trap make an empty ``grep -o`` an exit 1: ``PuppetPullFailed``.
- ``replicate_pick``: govuk-docker's ``bin/replicate-{postgresql,mysql}.sh``::

      aws s3 ls "s3://${bucket}/${db_hostname}/" | grep "\\.gz$" | sed 's/.* //' | sort | tail -n1

  ``sort`` in the C locale (byte order), which is what ``sorted`` on ``str`` does.
- ``db_backup_list_pick``: db-backup's fallback without a pointer (govuk-helm-charts,
  ``charts/db-backup``): ``s5cmd ls $BUCKET/$DB_HOST/ | grep -Eo "[-0-9:TZ_]+-<db>\\.gz" | tail -1``,
  with ``_`` and ``-`` in the name matching either (``tr _- .``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

_PUPPET_TS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


class PuppetPullFailed(Exception):
    """``govuk_env_sync.sh -a pull`` exits 1 in ``get_timestamp_s3``."""


def s3_ls(client: object, bucket: str, path: str) -> list[str]:
    """What ``aws s3 ls s3://<bucket>/<path>/`` prints: ``PRE <dir>/`` lines, then one line per object
    (``<date> <time> <size> <name>``), in the listing's (byte) order."""
    resp = client.list_objects_v2(Bucket=bucket, Prefix=f"{path}/", Delimiter="/")  # type: ignore[attr-defined]
    lines = [f"{'PRE':>30} {p['Prefix'][len(path) + 1 :]}" for p in resp.get("CommonPrefixes", [])]
    for obj in resp.get("Contents", []):
        when = obj["LastModified"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when} {obj['Size']:>10} {obj['Key'][len(path) + 1 :]}")
    return lines


def local_ls(directory: Path) -> list[str]:
    """The same lines for a local directory standing in for ``s3://<bucket>/<path>/``."""
    lines = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            lines.append(f"{'PRE':>30} {entry.name}/")
            continue
        st = entry.stat()
        when = datetime.fromtimestamp(st.st_mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when} {st.st_size:>10} {entry.name}")
    return lines


def puppet_pick(lines: list[str], database: str) -> str:
    """The file name ``govuk_env_sync.sh -a pull`` downloads, or ``PuppetPullFailed``."""
    matching = [line for line in lines if f"-{database}." in line]
    if not matching:
        raise PuppetPullFailed(f"no line matches -{database}.")
    found = _PUPPET_TS.search(matching[-1])
    if found is None:
        raise PuppetPullFailed(f"no HH:MM:SS timestamp in the last matching line {matching[-1]!r}")
    return f"{found.group(0)}-{database}.gz"


def replicate_pick(lines: list[str]) -> str | None:
    """The file name govuk-docker's replicate scripts download (None: "couldn't figure out")."""
    names = sorted(line.rsplit(" ", 1)[-1] for line in lines if line.endswith(".gz"))
    return names[-1] if names else None


def db_backup_list_pick(lines: list[str], database: str) -> str | None:
    """The file name db-backup's ``list | tail -1`` gives (None: nothing matched)."""
    pattern = re.compile(r"[-0-9:TZ_]+-" + re.sub(r"[_-]", ".", database) + r"\.gz")
    found = [m.group(0) for line in lines for m in pattern.finditer(line)]
    return found[-1] if found else None


def puppet_pg_image(dump: bytes) -> str:
    """The ``postgres:<tag>`` image ``govuk_env_sync.sh``'s PostgreSQL pull restores ``dump`` with:
    it reads the archive version from ``file`` (``PostgreSQL custom database dump - v1.14-0``) and
    knows two; any other is fatal (``PuppetPullFailed``)."""
    if not dump.startswith(b"PGDMP") or len(dump) < 8:
        raise PuppetPullFailed("not a PostgreSQL custom-format dump")
    version = f"v{dump[5]}.{dump[6]}-{dump[7]}"
    images = {"v1.13-0": "9.6.22", "v1.14-0": "13.4"}
    if version not in images:
        raise PuppetPullFailed(f"{version} is not a supported dump file version")
    return images[version]
