# The dataferry image: the CLI as entrypoint, the PostgreSQL and MariaDB client tools, zstd, and
# nothing else; runs as a non-root user (uid 10001, the uid the rendered pods run as).
#
# Build (docs/kubernetes.md, "The image"):
#   docker build --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t dataferry:$(git describe --always) .
# For a reproducible build pin the base by digest: --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
#
# The Debian packages are those of the base's release (bookworm: PostgreSQL 15 and MariaDB 10.11
# clients). pg_dump must be at least the server's major version: for newer servers, install
# postgresql-client-NN from the PostgreSQL project's apt repository instead (docs/kubernetes.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS wheel
ARG SOURCE_DATE_EPOCH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG SOURCE_DATE_EPOCH
# The tools 'dataferry check' looks for: pg_dump, pg_restore, psql; mariadb-dump, mariadb; zstd.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-client mariadb-client zstd ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*
COPY --from=wheel /wheels /wheels
# With the serve extra, so the same image runs the status page (dataferry serve, docs/kubernetes.md).
RUN pip install --no-cache-dir "$(ls /wheels/*.whl)[serve]" && rm -rf /wheels
RUN groupadd --system --gid 10001 dataferry \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/spool/dataferry --no-create-home \
        --shell /usr/sbin/nologin dataferry \
    && install -d -o 10001 -g 10001 -m 0700 /var/spool/dataferry
ENV DATAFERRY_CONFIG=/etc/dataferry/dataferry.toml \
    TMPDIR=/var/spool/dataferry \
    HOME=/var/spool/dataferry \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/spool/dataferry
ENTRYPOINT ["dataferry"]
CMD ["--help"]
