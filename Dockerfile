# syntax=docker/dockerfile:1
# One image for all four OMS services; the command picks the service:
#   docker run IMAGE run allocation        (default: run order_intake)
# Configuration comes from OMS_* environment variables (see docker-compose.yml, deploy/).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project (non-editable) and its dependencies into a virtualenv -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/oms
WORKDIR /src
# README.md* : the readme is optional for the build (setuptools only warns without it)
COPY pyproject.toml requirements.lock README.md* ./
COPY libs ./libs
COPY services ./services
# Every runtime dependency ships manylinux wheels for linux/amd64 and linux/arm64, so no
# compiler is needed. (The embedded broker/PostgreSQL packages come along as declared
# dependencies; production containers never start them: OMS_KAFKA_BOOTSTRAP and
# OMS_DATABASE_URL point at real servers.)
# -c requirements.lock: the dependency versions the tests passed with (scripts/lock.sh)
RUN /opt/oms/bin/pip install -c requirements.lock . \
 && /opt/oms/bin/python -m compileall -q /opt/oms/lib

# --- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="oms" \
      org.opencontainers.image.description="Order management system: order_intake, inventory, allocation, fulfillment" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 oms \
 && useradd --system --uid 10001 --gid oms --home-dir /home/oms --create-home --shell /usr/sbin/nologin oms
COPY --from=build /opt/oms /opt/oms
ENV PATH=/opt/oms/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMS_HTTP_HOST=0.0.0.0
WORKDIR /home/oms
# numeric id so Kubernetes' runAsNonRoot can verify it
USER 10001:10001
# order_intake 8001, inventory 8002, allocation 8003, fulfillment 8004 (OMS_<SERVICE>_PORT)
EXPOSE 8001 8002 8003 8004
# No HEALTHCHECK here: the port depends on the service; docker-compose.yml and the Kubernetes
# probes check /health/ready and /health/live of the service they run.
ENTRYPOINT ["oms"]
CMD ["run", "order_intake"]
