#!/usr/bin/env bash
# Sets StemBot up on a fresh Debian/Ubuntu machine: system packages, then .venv with torch and the project.
# Idempotent: a second run only checks. STEMBOT_TORCH overrides the torch requirement (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v ffmpeg >/dev/null || packages+=(ffmpeg)
command -v fluidsynth >/dev/null || packages+=(fluidsynth)              # renders the BPM/key evaluation set
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || packages+=(fluid-soundfont-gm)
command -v redis-server >/dev/null || packages+=(redis-server)          # the job queue (service and tests)
command -v chromium >/dev/null || packages+=(chromium)                  # the results page's browser test
command -v chromedriver >/dev/null || packages+=(chromium-driver)
if ((${#packages[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "setup: installing ${packages[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
torch_req=${STEMBOT_TORCH:-torch==2.13.0}
# torch first, then keep it pinned: otherwise a dependency can pull a multi-GB CUDA build in its place.
"${pip[@]}" install "$torch_req"
echo "$torch_req" > .venv/torch-constraint.txt
"${pip[@]}" install -c .venv/torch-constraint.txt -e ".[dev]"
