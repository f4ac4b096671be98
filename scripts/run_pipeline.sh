#!/usr/bin/env bash
# `make run`: the whole pipeline with DVC, timed, then a summary of where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1
[ -d .dvc ] || dvc init -q $( [ -d .git ] || echo --no-scm )
start=$(date +%s)
dvc repro
echo
echo "== dvc repro finished in $(( $(date +%s) - start )) s =="
echo
python scripts/summary.py
