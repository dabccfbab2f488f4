#!/usr/bin/env bash
# Installs everything into ./.venv from package registries only (nothing is downloaded at run time).
#   bash scripts/install.sh          # the app (+ Debian espeak-ng: text to speech in the talking-head tab)
#   bash scripts/install.sh --test   # the app + test tools (Debian chromium, pytest, playwright)
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$candidate; break
    fi
  done
fi
[ -n "$PY" ] || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)   # the app's offline text to speech (en, cmn, ...)
if [ "$WITH_TESTS" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  # a small CJK font (5 MB; fonts-noto-cjk is ~90 MB): headless screenshots of the 简体中文 UI show glyphs, not boxes
  [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)
fi
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# The CPU build of torch first, so that no dependency pulls a multi-GB CUDA build.
.venv/bin/python -c 'import torch' 2>/dev/null || "${PIP[@]}" "torch==2.13.0"
if [ "$WITH_TESTS" = 1 ]; then "${PIP[@]}" -e '.[test]'; else "${PIP[@]}" -e .; fi
# open_clip_torch carries the CLIP BPE vocab; --no-deps keeps timm/torchvision (and a CUDA torch) out.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("open_clip") is None)' \
  || "${PIP[@]}" --no-deps "open_clip_torch>=2.24"
# spandrel (upscaler model files) declares torchvision, which has no build for torch 2.13.0 and would pull
# a CUDA torch; --no-deps, and webui/upscale/spandrel_import.py imports it without torchvision.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("spandrel") is None)' \
  || "${PIP[@]}" --no-deps "spandrel>=0.4.2"
# Ray (the GPU farm, --cluster): in pyproject; checked here so an older .venv gets it too.
.venv/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("ray") is None)' \
  || "${PIP[@]}" "ray>=2.40"
echo "installed into .venv"
