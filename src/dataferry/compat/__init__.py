"""Compatibility with GOV.UK's environment sync, so moving to dataferry rewrites nothing.

* ``jobfile``: ``govuk_env_sync.sh`` job files (``.cfg``) and the script's flags, parsed safely
  (the file is read, never sourced).
* the ``govuk`` and ``govuk-puppet`` key layouts of a store live in ``dataferry.layouts`` (exactly
  what GOV.UK's consumers of each era read).
* ``legacy``: runs a job file's ``push``, ``pull`` or ``s3_sync`` with dataferry's behaviour.
* ``importer``: turns a directory of job files or db-backup Helm values into a dataferry config
  (``helm_import`` reads the chart's values; ``imported`` holds the result and renders it).
"""
