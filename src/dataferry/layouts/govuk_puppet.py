"""The ``govuk-puppet`` layout: what the Puppet-era ``govuk_env_sync.sh`` writes and reads.

For each database, in the directory ``<path>`` (the ``-p`` of the job file, GOV.UK's DB host)::

    <path>/<YYYY-MM-DDTHH:MM:SS>-<name>.gz                         the dump: the only object there
    _dataferry/manifests/<path>/<YYYY-MM-DDTHH:MM:SS>-<name>.manifest.json   dataferry's manifest

and no pointer. The script finds "latest" with ``aws s3 ls s3://<url>/<path>/ | grep "\\-<db>\\." |
tail -1`` and then takes the ``HH:MM:SS`` timestamp out of that line: a pointer (``latest-<db>.txt``)
or a manifest beside the dumps is such a line and sorts last, and the pull fails. Here nothing but
the dumps match, and their colon names sort after every earlier dump of either era, so that pick,
govuk-docker's ``sort | tail -1`` and db-backup's ``list | tail -1`` all take dataferry's newest
dump. The content is GOV.UK's (custom-format PostgreSQL archives, gzip'd MySQL SQL) and reads are
the ``govuk`` layout's: the newest trusted dump of either era by its parsed time. So that ``legacy``
(whose default this layout is) still reads a directory db-backup or the ``govuk`` layout wrote, a
pointer found there is followed and manifests beside the dumps count as well as its own.
"""

from __future__ import annotations

import re
from typing import ClassVar

from dataferry.errors import NotFound, VerificationFailed
from dataferry.layouts.govuk import GovukLayout
from dataferry.layouts.govuk_listing import Listing
from dataferry.layouts.govuk_names import LEGACY_TS_FORMAT, MANIFEST_SUFFIX, manifest_key_for
from dataferry.progress import Reporter

#: Where this layout keeps its manifests: ``<prefix><path>/…``, a sibling of the dump directories
#: that ``aws s3 ls s3://<url>/<path>/`` never lists.
MANIFEST_PREFIX = "_dataferry/manifests/"

_PUPPET_TS = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"


class GovukPuppetLayout(GovukLayout):
    """One database's dumps in a ``govuk-puppet`` store."""

    name: ClassVar[str] = "govuk-puppet"
    has_pointer: ClassVar[bool] = False

    def manifest_key(self, data_key: str) -> str:
        """``_dataferry/manifests/<path>/<id>.manifest.json``: out of the script's sight."""
        return MANIFEST_PREFIX + manifest_key_for(data_key)

    def manifest_dir(self) -> str:
        """``_dataferry/manifests/<path>/``."""
        return MANIFEST_PREFIX + self.naming.key("")

    def name_format(self, same_hour: list[str]) -> str:
        """Always the script's ``date +%Y-%m-%dT%H:%M:%S``."""
        return LEGACY_TS_FORMAT

    def _pointer(self, listing: Listing, reporter: Reporter) -> str | None:
        """A pointer db-backup or the govuk layout left (this layout writes none): followed when it
        names a dump that is there, else reported and not followed. No pointer is the normal case."""
        if self.naming.pointer_key.rsplit("/", 1)[-1] not in listing.names:
            return None
        try:
            return super()._pointer(listing, reporter)
        except (NotFound, VerificationFailed) as exc:
            reporter.warn(f"{exc.message}: not followed")
            return None

    def _warn_about(self, listing: Listing, reporter: Reporter) -> None:
        """Warn when the script's own pick would fail in this directory, and say why."""
        problem = puppet_pick_problem(listing.names, self.naming.name)
        if problem:
            reporter.warn(problem)


def puppet_pick_problem(names: list[str], database: str) -> str | None:
    """Why ``govuk_env_sync.sh``'s ``get_timestamp_s3`` would fail on a directory holding ``names``
    (None if it would not): the last name in byte order (S3's listing order) containing
    ``-<database>.`` must hold an ``HH:MM:SS`` timestamp."""
    matching = sorted(n for n in names if f"-{database}." in n)
    if not matching or re.search(_PUPPET_TS, matching[-1]):
        return None
    last = matching[-1]
    why = "a manifest" if last.endswith(MANIFEST_SUFFIX) else "not a colon-named dump"
    return (
        f"govuk_env_sync.sh pulls of {database} will fail here: the last object its 'aws s3 ls | grep "
        f"-{database}. | tail -1' sees is {last} ({why}); remove it, or keep the govuk layout's "
        "pointers and manifests out of directories the Puppet-era script reads"
    )
