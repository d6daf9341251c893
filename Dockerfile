# streamlearn: the daemon as a container image.
#
#   docker build -t streamlearn .                                  # CPU PyTorch (default)
#   docker build -t streamlearn:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#   docker build -t streamlearn:cuda-base \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#
# PyTorch's CUDA wheels carry their own CUDA runtime, so the slim Python base works on a GPU
# host with the NVIDIA container toolkit; a CUDA base image is for sites that want the
# system libraries too (python3 and venv are installed on it with apt-get when missing; it
# must be Ubuntu 24.04 or newer, whose python3 is at least the 3.11 streamlearn needs).
# The image holds the daemon and its commands, not the demo's embedded broker: run
# `make demo` from a checkout for that.
ARG BASE_IMAGE=python:3.11-slim

# ---- build: a virtual environment with torch and streamlearn, nothing else ---------------
FROM ${BASE_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv --help >/dev/null 2>&1 || \
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
     --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*)
RUN python3 -m venv /opt/streamlearn
ENV PATH=/opt/streamlearn/bin:$PATH
# torch first, from the index the build argument names: an unpinned torch from PyPI would
# pull a multi-GB CUDA build into the CPU image.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streamlearn ./streamlearn
RUN pip install .

# ---- runtime: the environment, a config, a non-root user, a volume ------------------------
FROM ${BASE_IMAGE} AS runtime
RUN python3 -m venv --help >/dev/null 2>&1 || \
    (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
     --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*)
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/streamlearn streamlearn \
    && mkdir -p /var/lib/streamlearn/checkpoints /etc/streamlearn \
    && chown -R streamlearn:streamlearn /var/lib/streamlearn
COPY --from=build /opt/streamlearn /opt/streamlearn
COPY config/default.yaml /etc/streamlearn/streamlearn.yaml
ENV PATH=/opt/streamlearn/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMLEARN_CHECKPOINT__DIR=/var/lib/streamlearn/checkpoints \
    STREAMLEARN_LOG__FORMAT=json
USER streamlearn
WORKDIR /var/lib/streamlearn
VOLUME ["/var/lib/streamlearn/checkpoints"]
# 8080: HTTP (Open Inference Protocol v2, /v1, /metrics); 8081: gRPC; 9100: metrics.
EXPOSE 8080 8081 9100
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# SIGTERM starts the drain: readiness turns 503 (serve.shutdown_delay_s, 1 s), in-flight
# requests finish (serve.drain_timeout_s, 5 s), outputs flush (kafka.flush_timeout_s, up to
# 10 s), a final checkpoint is written and its offsets committed. Give the container 30 s
# to stop (docker stop -t 30, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds); a second SIGTERM exits at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["streamlearn"]
CMD ["run", "--config", "/etc/streamlearn/streamlearn.yaml"]
