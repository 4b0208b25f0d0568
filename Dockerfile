# GPU image: CUDA-enabled PyTorch base, attnunet installed, non-root user.
#   docker build -t attnunet .
#   docker run --gpus all -v $PWD/work:/work attnunet attnunet-train
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    ATTNUNET_CACHE=/work/cache
WORKDIR /opt/attnunet
COPY pyproject.toml README.md ./
COPY attnunet ./attnunet
COPY configs ./configs
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 attnunet \
    && mkdir -p /work && chown attnunet /work
USER attnunet
WORKDIR /work
VOLUME ["/work"]
CMD ["attnunet-train", "--help"]
