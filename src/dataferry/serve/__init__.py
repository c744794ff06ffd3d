"""``dataferry serve``: a status page over the same library functions as ``status``, ``history``
and ``list``, read from the stores on each request (``app.create_app``).

Modules: ``matrix`` (the freshness matrix and its colours), ``pages`` (job and database pages),
``charts`` (bar charts as server-side SVG), ``exposition`` (``/metrics``), ``security`` (the write
token and the CSRF check), ``writes`` (pause and resume), ``app`` (the Starlette routes). The
templates and the stylesheet are package data in ``templates/`` and ``static/``.
"""
