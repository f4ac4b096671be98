#!/usr/bin/env bash
# GPU check of the CAJNN paper network (issue 3): Set5-sized inputs, fp32 / TF32 / bf16 timings
# and peak GPU memory. Run from anywhere on a machine with an NVIDIA GPU:
#
#     bash benchmarks/gpu_check.sh                 # writes $OUT/gpu_check.json when OUT is set
#     bash benchmarks/gpu_check.sh --reps 20       # extra arguments go to gpu_check_model.py
#     bash benchmarks/gpu_check.sh --train         # training speed at the paper's settings (issue 6)
#
# Python: $PYTHON if set, else python3 when it already has a CUDA build of torch (GPU images
# usually do, and may have no package index to install from); otherwise a fresh venv
# .venv-gpu (reusing system packages) with `pip install torch==2.13.0 numpy` (pip picks
# the CUDA build on Linux x86-64). The check needs only torch and numpy.
set -euo pipefail
cd "$(dirname "$0")/.."

has_cuda_torch() {
    "$1" -c 'import sys, numpy, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
}

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if has_cuda_torch python3; then
        PY=python3
    elif [[ -x .venv-gpu/bin/python ]] && has_cuda_torch .venv-gpu/bin/python; then
        PY=.venv-gpu/bin/python
    else
        echo "python3 has no CUDA torch: creating .venv-gpu" >&2
        python3 -m venv --system-site-packages .venv-gpu
        .venv-gpu/bin/pip install -q --disable-pip-version-check torch==2.13.0 numpy
        PY=.venv-gpu/bin/python
    fi
fi

echo "== $(date -u +%FT%TZ)  python: $PY  torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda)')"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1
if [[ "${1:-}" == "--train" ]]; then
    # Training at the paper's settings (issue 6): bf16 and fp32, then torch.compile with bf16.
    shift
    for args in "--dtype bf16" "--dtype fp32" "--dtype bf16 --compile"; do
        PYTHONPATH=. "$PY" benchmarks/gpu_check_train.py $args "$@"
    done
else
    PYTHONPATH=. "$PY" benchmarks/gpu_check_model.py "$@"
fi
