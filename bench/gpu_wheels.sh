#!/usr/bin/env bash
# Wheels for running bench/separation.py on a lent GPU machine, which has no network at all.
#
#   bash bench/gpu_wheels.sh                      # here: fill .whl/ from the package index, print sizes
#   bash bench/gpu_wheels.sh install [/tmp/site]  # there: install .whl/ offline, then check every import
#
# The device image (Python 3.12, CUDA torch) already holds the heavy packages the bench needs (numpy, scipy,
# numba + llvmlite for librosa, onnxruntime, which audio-separator's Separator imports at module level), and
# they could not travel anyway: llvmlite 57 MiB, scipy 34, onnxruntime 26, numpy 16 against the 64 MiB that
# carry allows. So only what the image lacks travels (.whl/), plus small packages the image is listed with,
# as insurance (.whl/fallback/): `install` adds one of those only where it does not import there, since a
# copy on PYTHONPATH would shadow the image's own version. Device run, with carry [".whl"]:
#
#   bash bench/gpu_wheels.sh install /tmp/site && export PYTHONPATH=/tmp/site &&
#     PYTHONUNBUFFERED=1 python3 bench/separation.py --real-size --device cuda --seconds 300 --json $OUT/gpu.json
set -euo pipefail

cd "$(dirname "$0")/.."
WHL=.whl
LIMIT_MIB=60  # carry's limit is 64 MiB for the whole tree; leave room

# Imported on the bench's path and absent from the device image (see the device tool's KINDS.md).
# Pins: the versions in .venv. "module" is what the install check imports.
REQUIRED=(
  "audio-separator==0.47.1 audio_separator"        # the architectures our engine builds, and the reference side
  "librosa==0.11.0 librosa"                        # mel filters of the Mel-Band Roformer
  "soundfile==0.14.0 soundfile"                    # imported by audio-separator (bundles libsndfile)
  "cffi==2.1.1 _cffi_backend"                      # soundfile's binding
  "audioread==3.1.0 audioread"                     # imported by audio-separator's spec_utils
  "pydub==0.25.1 pydub"                            # imported by audio-separator's Separator
  "beartype==0.18.5 beartype"                      # the Roformer modules
  "rotary-embedding-torch==0.6.5 rotary_embedding_torch"
  "ml_collections==1.1.0 ml_collections"           # MDX23C's config object
  "decorator==5.3.1 decorator"                     # librosa's cache
  "pooch==1.9.0 pooch"                             # librosa.util.files
  "platformdirs==4.14.9 platformdirs"              # pooch
)
# Imported on the bench's path and listed in the device image: carried, installed only where missing.
FALLBACK=(
  "PyYAML==6.0.4 yaml"
  "requests==2.34.2 requests"
  "urllib3==2.8.0 urllib3"
  "idna==3.20 idna"
  "certifi==2026.10.19.post1 certifi"
  "charset-normalizer==3.5.3 charset_normalizer"
  "tqdm==4.70.1 tqdm"
  "einops==0.8.2 einops"
  "packaging==26.4 packaging"
  "lazy-loader==0.6 lazy_loader"
  "absl-py==2.5.1 absl"
  "joblib==1.6.0 joblib"
  "msgpack==1.2.4 msgpack"
  "typing_extensions==4.16.0 typing_extensions"
  "six==1.17.0 six"
)
# Must already be on the device: too big to carry (checked by `install`, not downloaded).
IMAGE=(torch numpy scipy numba llvmlite onnxruntime)

install() {
  local site=${1:-/tmp/site} entry pin module name wheel extra=()
  shopt -s nullglob nocaseglob
  python3 -m pip install -q --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$WHL"/*.whl
  for entry in "${FALLBACK[@]}"; do
    read -r pin module <<<"$entry"
    if ! python3 -c "import $module" 2>/dev/null; then
      name=${pin%%==*}
      for wheel in "$WHL"/fallback/"${name//-/_}"-*.whl; do extra+=("$wheel"); done
    fi
  done
  if ((${#extra[@]})); then
    echo "not in the image, installed from .whl/fallback: ${extra[*]##*/}"
    python3 -m pip install -q --root-user-action=ignore --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${extra[@]}"
  fi
  # Fail here, in one line, rather than minutes into the bench.
  local modules=("${IMAGE[@]}")
  for entry in "${REQUIRED[@]}" "${FALLBACK[@]}"; do read -r pin module <<<"$entry"; modules+=("$module"); done
  PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" python3 -W ignore - "${modules[@]}" <<'EOF'
import importlib, sys
missing = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # an ImportError, or a broken binary
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
if missing:
    sys.exit("cannot import: " + "; ".join(missing))
import numpy, scipy, numba, onnxruntime, torch
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (cuda {torch.cuda.is_available()}), numpy "
      f"{numpy.__version__}, scipy {scipy.__version__}, numba {numba.__version__}, onnxruntime {onnxruntime.__version__}")
import audio_separator.separator  # noqa: F401  (imports librosa, onnxruntime, requests, soundfile, pydub)
print("all imports of bench/separation.py resolve")
EOF
}

fill() {
  local entry pin module pins=() fallback=() total tree
  for entry in "${REQUIRED[@]}"; do read -r pin module <<<"$entry"; pins+=("$pin"); done
  for entry in "${FALLBACK[@]}"; do read -r pin module <<<"$entry"; fallback+=("$pin"); done
  if [[ -x .venv/bin/python ]]; then  # the pins are meant to match .venv: say when they have drifted
    .venv/bin/python - "${pins[@]}" "${fallback[@]}" <<'EOF'
import importlib.metadata as md, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        here = md.version(name)
    except md.PackageNotFoundError:
        here = "absent"
    if here != version:
        print(f"note: .venv has {name} {here}, the wheel pinned here is {version}")
EOF
  fi
  # Stale wheels would leave two versions of a package, which stops the whole install there.
  mkdir -p "$WHL/fallback"
  rm -f "$WHL"/*.whl "$WHL"/fallback/*.whl
  # --no-deps: every package is named above; the platforms are the ones the device's glibc accepts.
  local args=(download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
              --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
              --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
  python3 -m pip "${args[@]}" -d "$WHL" "${pins[@]}"
  python3 -m pip "${args[@]}" -d "$WHL/fallback" "${fallback[@]}"
  find "$WHL" -type f -name '*.whl' -printf '%s\t%P\n' | sort -rn | awk -F'\t' '{printf "%8.2f MiB  %s\n", $1 / 2^20, $2}'
  total=$(find "$WHL" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  # What else travels: tracked files and untracked ones git does not ignore.
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
         | awk '{s += $1} END {print s + 0}')
  awk -v w="$total" -v t="$tree" -v lim="$LIMIT_MIB" 'BEGIN {
    printf "wheels %.2f MiB + working tree %.2f MiB = %.2f MiB (limit %d MiB)\n", w / 2^20, t / 2^20, (w + t) / 2^20, lim
    exit (w + t > lim * 2^20) }' || { echo "over ${LIMIT_MIB} MiB: carry would refuse the tree" >&2; exit 1; }
}

case "${1:-fill}" in
  fill) fill ;;
  install) install "${2:-/tmp/site}" ;;
  *) echo "usage: $0 [fill | install [SITE]]" >&2; exit 2 ;;
esac
