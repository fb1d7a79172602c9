# A slim, non-root image of the ticker server. Redis is a separate service (compose).
# Installs exactly uv.lock (hashes checked), as scripts/setup.sh does: nothing is resolved
# during the build.
FROM python:3.11-slim AS build
WORKDIR /src
COPY scripts/uv.requirements.txt ./scripts/
RUN pip install --no-cache-dir --no-deps --require-hashes -r scripts/uv.requirements.txt
ENV UV_PROJECT_ENVIRONMENT=/opt/ticker \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
COPY pyproject.toml uv.lock README.md ./
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
RUN uv sync --locked --no-dev --no-install-project --no-cache
COPY ticker ./ticker
COPY web ./web
RUN uv sync --locked --no-dev --no-editable --no-cache

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin ticker
COPY --from=build /opt/ticker /opt/ticker
USER ticker
WORKDIR /app
ENV PATH=/opt/ticker/bin:$PATH \
    TICKER_HOST=0.0.0.0 \
    TICKER_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"
STOPSIGNAL SIGTERM
CMD ["ticker", "serve"]
