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
dvc metrics show
cat <<MSG

Results
  evaluation table   reports/table.md      (PSNR-Y / SSIM-Y per QF; also: dvc metrics show)
  weights            models/cajnn.safetensors + models/cajnn.json
  training curve     models/train_curve.csv  (dvc plots show)
  side-by-side crops reports/samples/
  model registry     $(python -c 'import json; r = json.load(open("reports/registry.json")); print("models:/%s/%s (champion: version %s)" % (r["model_name"], r["version"], r["champion"]))')
  MLflow UI          make ui   ->  http://127.0.0.1:5000
MSG
