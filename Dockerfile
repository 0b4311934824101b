# One image for every StemBot process (bots, worker, web); docker-compose.yml picks the command.
# CUDA torch comes from PyPI's default build; set STEMBOT_TORCH=torch==2.13.0+cpu-style pins for CPU-only images.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ARG STEMBOT_TORCH=torch==2.13.0
RUN pip install --no-cache-dir "$STEMBOT_TORCH" && echo "$STEMBOT_TORCH" > /tmp/torch-constraint.txt
COPY pyproject.toml README.md ./
COPY bot bot
COPY separation_worker separation_worker
COPY storage storage
COPY stembot stembot
RUN pip install --no-cache-dir -c /tmp/torch-constraint.txt .

ENV STEMBOT_DATA_DIR=/data STEMBOT_MODEL_DIR=/models
VOLUME ["/data", "/models"]
ENTRYPOINT ["stembot"]
