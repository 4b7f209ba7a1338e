# Code location image: the gRPC code server for aperiodic_assets, also the image ECS/K8s run
# workers start from. Dependencies are pinned by deploy/constraints.txt for reproducible builds.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/dagster/app
COPY deploy/constraints.txt ./deploy/constraints.txt
COPY pyproject.toml README.md ./
COPY aperiodic_assets ./aperiodic_assets
RUN pip install --constraint deploy/constraints.txt . \
 && useradd --create-home --uid 10001 dagster
USER dagster

# No secrets here: APERIODIC_API_KEY reaches runs from the platform's secret store.
EXPOSE 4000
CMD ["dagster", "code-server", "start", "--host", "0.0.0.0", "--port", "4000", \
     "--module-name", "aperiodic_assets.definitions", "--location-name", "aperiodic_assets"]
