# syntax=docker/dockerfile:1
# PloyD's service image: `ployd serve` as a non-root user on Python 3.11.
#   docker build -t ployd:0.1.0 .
#   docker run -p 8080:8080 -e PLOYD_HOST=0.0.0.0 -e PLOYD_ADMIN_TOKEN=... ployd:0.1.0
# infra/terraform runs it on ECS Fargate (read-only root filesystem; /var/lib/ployd and
# /tmp are task-local volumes).

FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
RUN python -m venv /opt/ployd
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/ployd/bin/pip install --no-cache-dir ".[postgres]"


FROM python:3.11-slim-bookworm

# git: the agent clones the job's repository (the server itself, under the ec2 executor,
# runs no jobs); ca-certificates for HTTPS to the forges and AWS.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 ployd \
    && useradd --system --uid 10001 --gid ployd --home-dir /var/lib/ployd --shell /usr/sbin/nologin ployd \
    && mkdir -p /var/lib/ployd \
    && chown ployd:ployd /var/lib/ployd

COPY --from=build /opt/ployd /opt/ployd

ENV PATH=/opt/ployd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PLOYD_DATA_DIR=/var/lib/ployd \
    PLOYD_PORT=8080

USER 10001:10001
WORKDIR /var/lib/ployd
# ECS copies these paths (contents and ownership) into the task volumes mounted there.
VOLUME ["/var/lib/ployd", "/tmp"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["ployd"]
CMD ["serve"]
