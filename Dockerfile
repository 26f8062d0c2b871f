# syntax=docker/dockerfile:1
# Switchyard's image: docs/deploy.md. Two stages: `build` makes the wheel and a virtualenv with it; the final stage
# copies only that virtualenv onto a slim Python, and runs as an unprivileged user.
#
#   docker build -t switchyard .
#   docker build --build-arg EXTRAS=local,otel -t switchyard:local .   # extras: local (llama.cpp), otel, bedrock, ...
#   docker run -p 4000:4000 switchyard

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
# comma-separated extras of the switchyard package; `local` also builds llama.cpp here (a C++ compiler, minutes)
ARG EXTRAS=""
# llama.cpp with portable CPU flags, as scripts/install-local.sh builds it (a native build crashes on other CPUs)
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN case ",${EXTRAS}," in \
      *,local,*) apt-get update \
        && apt-get install -y --no-install-recommends build-essential cmake \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv /opt/switchyard \
    && whl="$(echo /wheels/switchyard-*.whl)" \
    && CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" /opt/switchyard/bin/pip install "${whl}${EXTRAS:+[${EXTRAS}]}"

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG EXTRAS=""
LABEL org.opencontainers.image.title="switchyard" \
      org.opencontainers.image.description="OpenAI- and Anthropic-compatible LLM gateway" \
      org.opencontainers.image.licenses="Apache-2.0"
# llama.cpp's runtime needs OpenMP's library (the only shared library the wheels do not carry)
RUN case ",${EXTRAS}," in \
      *,local,*) apt-get update \
        && apt-get install -y --no-install-recommends libgomp1 \
        && rm -rf /var/lib/apt/lists/* ;; \
    esac \
    && groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchyard --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/lib/switchyard /etc/switchyard \
    && chown 10001:10001 /var/lib/switchyard
COPY --from=build /opt/switchyard /opt/switchyard
COPY deploy/switchyard.yaml /etc/switchyard/switchyard.yaml
ENV PATH="/opt/switchyard/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml \
    HOME=/var/lib/switchyard
# the store (SQLite, when no SWITCHYARD_STORE_URL), the spend spool: a volume in production
VOLUME ["/var/lib/switchyard"]
WORKDIR /var/lib/switchyard
USER 10001:10001
EXPOSE 4000
# /health/live: the process answers (a store outage shows on /health/ready, for load balancers, not as a restart)
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4000/health/live', timeout=2)"]
ENTRYPOINT ["switchyard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "4000"]
