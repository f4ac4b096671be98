#!/usr/bin/env bash
# GPU check of the shipped model's recipe at paper scale: train the paper network (14.9M) on the
# shipped model's data (.gpu-data: `cajnn fetch sample mate-backgrounds --dest .gpu-data`, plus
# .gpu-data/vendor/{turbojpeg.py,libturbojpeg.so.0} for machines without PyTurboJPEG) for a
# wall-clock budget, score it on the held-out photos next to the CPU-trained shipped model, and
# time bf16 / fp16 inference. See benchmarks/gpu_train_shipped.py.
#
#     bash benchmarks/gpu_check_shipped.sh --minutes 7       # on the lent GPU machine (~8.5 min in all)
#     bash benchmarks/gpu_check_shipped.sh --device cpu --model-preset micro --minutes 0.1 --batch 4 \
#          --limit-images 3 --precision-size 32 --eval-every 0   # smoke test anywhere
#
# Python: $PYTHON if set, else python3 when it has a CUDA build of torch, else .venv/bin/python
# (CPU smoke tests). CPU weights: $CPU_WEIGHTS if set (empty: none), else the shipped
# cajnn/shipped/cpu-base/model.safetensors when present. Extra arguments go to the script.
# Writes $OUT/gpu_train_shipped.json, .log and the trained weights when OUT is set (set -o pipefail:
# the script's exit status is the wrapper's).
set -euo pipefail
export GPU_CHECK_T0="${GPU_CHECK_T0:-$(date +%s.%N)}"  # the script's --deadline counts from here
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
        PY=python3
    elif [[ -x .venv/bin/python ]]; then
        PY=.venv/bin/python
    else
        PY=python3
    fi
fi

CPU_WEIGHTS="${CPU_WEIGHTS-cajnn/shipped/cpu-base/model.safetensors}"
extra=()
if [[ -n "$CPU_WEIGHTS" ]]; then
    if [[ -f "$CPU_WEIGHTS" ]]; then
        extra+=(--cpu-weights "$CPU_WEIGHTS")
    else
        echo "warning: CPU weights $CPU_WEIGHTS not found; scoring the GPU model only" >&2
    fi
fi

echo "== $(date -u +%FT%TZ)  python: $PY ($("$PY" -c 'import platform, torch; print(platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)'))  cpus: $(nproc)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
export PYTHONUNBUFFERED=1
if [[ -n "${OUT:-}" ]]; then  # the whole log comes back too, even if the command is stopped
    PYTHONPATH=. "$PY" benchmarks/gpu_train_shipped.py --data .gpu-data ${extra[@]+"${extra[@]}"} "$@" 2>&1 \
        | tee "$OUT/gpu_train_shipped.log"
else
    PYTHONPATH=. exec "$PY" benchmarks/gpu_train_shipped.py --data .gpu-data ${extra[@]+"${extra[@]}"} "$@"
fi
