# One image for every StemBot process (worker, web, bots, and the one-shot check and model download);
# docker-compose.yml picks the command. It is the GPU worker's image: CUDA torch from PyPI (its default Linux
# wheel is the CUDA build), with what torch.compile's Triton needs at run time.
#   CPU-only variant: docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .
#   Fresh yt-dlp (do it weekly: sites change): docker compose build --build-arg YTDLP_REFRESH=$(date +%F)
# Bookworm: the Debian release (and so the ffmpeg) the test suite runs on.
FROM python:3.11-slim-bookworm

# ffmpeg: every decode and encode. gcc + libc6-dev: Triton compiles a small C launcher (against Python.h, which
# this image ships in /usr/local/include) the first time a torch.compile'd model runs on CUDA; diffq, pulled in by
# audio-separator, also builds from source at install. libc6-dev is only a "recommends" of gcc, so it is named.
# Unpinned on purpose: the release's current packages carry its security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

# Fail the build here, not at the first compiled call: the toolchain builds a shared object against Python.h
# the way Triton does.
RUN printf '#include <Python.h>\nint stembot_probe(void) { return Py_IsInitialized(); }\n' > /tmp/probe.c \
 && gcc -O2 -shared -fPIC -I"$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
      /tmp/probe.c -o /tmp/probe.so \
 && rm /tmp/probe.c /tmp/probe.so

# Triton links that launcher with -lcuda, i.e. the unversioned libcuda.so, while the NVIDIA container runtime
# mounts the driver as libcuda.so.1 (the unversioned name only in some setups). This link resolves once the driver
# is mounted; gcc searches LIBRARY_PATH after Triton's own -L folders, so it only fills that gap.
RUN mkdir -p /opt/stembot/lib \
 && ln -s "/usr/lib/$(gcc -dumpmachine)/libcuda.so.1" /opt/stembot/lib/libcuda.so
ENV LIBRARY_PATH=/opt/stembot/lib

WORKDIR /app

# As scripts/setup.sh does it: torch first, then kept pinned by a constraints file while the rest installs
# (otherwise a dependency can swap it for another build). With the CPU index, pip installs e.g. 2.13.0+cpu,
# which the torch==2.13.0 constraint accepts.
ARG STEMBOT_TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=
# The version is in STEMBOT_TORCH, which hadolint cannot see.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "$STEMBOT_TORCH" \
 && mkdir -p /etc/stembot && echo "$STEMBOT_TORCH" > /etc/stembot/torch-constraint.txt

# The project's dependencies in their own layer (read from pyproject.toml), so a code change doesn't reinstall them.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -c /etc/stembot/torch-constraint.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# yt-dlp kept current: YouTube and others change weekly. `default` brings yt-dlp-ejs (the scripts yt-dlp runs for
# YouTube) and `deno` the JavaScript runtime they run in, which yt-dlp uses by default when it is on PATH.
# Change YTDLP_REFRESH to rebuild from this layer on (the layers above stay cached).
ARG YTDLP_REFRESH=
RUN echo "yt-dlp refresh: ${YTDLP_REFRESH:-at first build}" \
 && pip install --no-cache-dir -c /etc/stembot/torch-constraint.txt --upgrade "yt-dlp[default,deno]" \
 && yt-dlp --version && deno --version

COPY bot bot
COPY separation_worker separation_worker
COPY storage storage
COPY stembot stembot
RUN pip install --no-cache-dir -c /etc/stembot/torch-constraint.txt . \
 && rm -rf build ./*.egg-info

# A user of its own, named by number in USER so that a runtime can tell it is not root. /data and /models are created here and owned by it, so that Docker fills new named volumes
# mounted there with this ownership.
RUN groupadd --gid 10001 stembot \
 && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin stembot \
 && mkdir -p /data /models \
 && chown stembot:stembot /data /models

# CUDA_DEVICE_ORDER: STEMBOT_GPUS indices then mean what nvidia-smi shows (CUDA's own order is fastest first).
# PYTHONUNBUFFERED: log lines reach `docker compose logs` as they are written.
ENV STEMBOT_DATA_DIR=/data \
    STEMBOT_MODEL_DIR=/models \
    CUDA_DEVICE_ORDER=PCI_BUS_ID \
    PYTHONUNBUFFERED=1
VOLUME ["/data", "/models"]
USER 10001:10001

# No HEALTHCHECK here: one image plays several roles, so docker-compose.yml sets one per service.
ENTRYPOINT ["stembot"]
CMD ["--help"]
