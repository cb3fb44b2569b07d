# zwz for GPU serving: CUDA, vLLM and zwz; the default command is `zwz serve` on the vLLM engine.
#
#   docker build -t zwz .
#   docker run --gpus all --ipc=host -p 8000:8000 -v /models:/models -e ZWZ_MODEL=/models/ZwZ-8B zwz
#   docker run --gpus all --ipc=host -p 8000:8000 -v /models:/models zwz \
#       zwz serve --model /models/ZwZ-7B --tensor-parallel-size 2 --max-model-len 32768
#
# Every `zwz serve` flag also reads from a ZWZ_<NAME> variable. --ipc=host (or a large --shm-size) lets
# vLLM's worker processes share tensors when a model is split over several GPUs.

# torch 2.13's CUDA wheels are built for CUDA 13.0 (the host driver must support it); the devel image
# carries the compiler that vLLM's kernel libraries (FlashInfer, Triton) use for just-in-time builds.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/zwz
# Dependencies first, read from pyproject.toml (this layer survives code edits), then zwz itself.
ARG EXTRAS=vllm,kernels,eval
COPY pyproject.toml README.md ./
RUN python3 -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *(d for e in os.environ['EXTRAS'].split(',') for d in p['optional-dependencies'][e]), sep='\n')" \
    > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps .

RUN useradd --create-home zwz && mkdir -p /data && chown zwz /data
USER zwz
# HF_HOME: vLLM's caches (without --model the image serves zwz-nano, shipped in the package).
ENV HF_HOME=/data/hf \
    ZWZ_ENGINE=vllm \
    ZWZ_HOST=0.0.0.0 \
    ZWZ_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s \
    CMD python3 -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"ZWZ_PORT\"]}/health')"

CMD ["zwz", "serve"]
