#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian/Ubuntu machine: system packages (apt), .venv, pinned installs.
# Called by `make run` and `make test`; a second call does only cheap checks.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.installed"

# 1. System packages, each checked with dpkg (cheap) and installed together when any is missing:
#    libturbojpeg0      libjpeg-turbo's TurboJPEG API (PyTurboJPEG loads it with ctypes)
#    tesseract-ocr(-eng) the text recognizer of the downstream stage (paper IV-C)
#    wamerican          its word list; fonts-dejavu-core, fonts-liberation: the fonts it draws words in
#    chromium           headless browser: the test of reports/compare.html opens the page in it
APT_PACKAGES=(libturbojpeg0 tesseract-ocr tesseract-ocr-eng wamerican fonts-dejavu-core fonts-liberation chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    echo "setup: system packages missing: ${missing[*]}" >&2
    echo "       Install them as root:  sudo apt-get install -y ${missing[*]}   (Debian/Ubuntu)" >&2
    exit 1
  fi
fi

# 2. The virtualenv and the pinned packages. The stamp holds the hash of the lock and project
#    files, so that editing either reinstalls and nothing else does.
want="$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
start=$(date +%s)
echo "setup: installing the pinned packages into $VENV (a few minutes the first time)"
# -qq: errors only. pip's warnings are about the machine's own pip configuration (e.g. index
# folders that do not exist), hundreds of lines a user can do nothing about here.
PIP=("$VENV/bin/python" -m pip install -qq)
"${PIP[@]}" --upgrade pip
# torch is pinned to the CPU build's version; on a CUDA machine pip takes the CUDA wheel of the
# same version. The lock was produced by `pip freeze` from one resolve (see Makefile `lock`).
"${PIP[@]}" -r requirements.lock
"${PIP[@]}" --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
echo "setup: installed pinned dependencies in $(( $(date +%s) - start )) s"
