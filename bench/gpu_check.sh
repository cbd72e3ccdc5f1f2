#!/usr/bin/env bash
# What only a GPU can check, in one run of under 10 minutes on an H200 (issue 18, items 3 and 4):
#
#   bench/gpu_check.sh [quick | table]          (from the repository root; PYTHON=... to choose)
#
# quick (the default), each step with its own time limit, every step run even when one fails:
# The time limits add up to 510 s; on an H200 it should take about 5 minutes.
#   1. the machine: nvidia-smi, torch and its CUDA, gsplat, which pycolmap build (has_cuda)
#   2. the GPU tests: gaussian-splatting/tests/test_gs_cuda.py (cpu vs cuda renders and
#      gradients; every --strategy, mcmc antialiased too, trained on the tiny scene on CUDA;
#      gsplat compiles its kernels on first use, about a minute); the strategies' CPU tests
#      (test_gs_strategies.py) need no GPU and are left to the ordinary test run
#   3. bench/sfm.py --device cpu,gpu fountain-p11: SfM timings on the CPU and on CUDA (CUDA only
#      with pycolmap-cuda12 installed) and the quality-gate numbers side by side
#   4. bench/train.py --backend cuda --strategies ours,default,mcmc --iterations 2000 kermit:
#      the three strategies side by side, held-out PSNR, SSIM, LPIPS, time, peak GPU memory,
#      Gaussians
# table: the comparison issue 18 asks for (kermit, fountain-p11 and sceaux, 7,000 and 30,000
#   iterations, ours, default and mcmc): 18 trainings, longer than one 10-minute device call;
#   run it where a GPU is held for about an hour, or one set per call:
#   bench/gpu_check.sh table kermit; bench/gpu_check.sh table fountain-p11; ...
#
# Everything it prints also goes to $OUT/gpu_check.log (OUT: the device tool's result folder;
# else a new folder under /tmp, named at the start), with each bench's JSON line in $OUT/*.json.
set -uo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
    for candidate in .venv/bin/python /opt/instarecon/venv/bin/python python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON=$candidate; break; fi
    done
fi
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")}
mkdir -p "$OUT"
export PYTHONPATH="$PWD:$PWD/gaussian-splatting${PYTHONPATH:+:$PYTHONPATH}"
DATASETS=${DATASETS:-../shared/datasets}
LPIPS=()
[ -n "${LPIPS_WEIGHTS:-}" ] && LPIPS=(--lpips-weights "$LPIPS_WEIGHTS")
mode=${1:-quick}
case $mode in
    quick | table) ;;
    *) echo "usage: bench/gpu_check.sh [quick | table [SET ...]]" >&2; exit 2 ;;
esac
failed=()

step() {  # step NAME SECONDS COMMAND...: runs it under a time limit, logs, remembers a failure
    local name=$1 limit=$2
    shift 2
    echo "=== $name (at most ${limit} s): $*"
    local started=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    local status=$?
    echo "=== $name: exit $status after $((SECONDS - started)) s"
    [ "$status" = 0 ] || failed+=("$name (exit $status)")
}

{
    echo "bench/gpu_check.sh $mode, $(date -u +%FT%TZ), python $PYTHON"
    step machine 30 bash -c "nvidia-smi -L; $PYTHON - <<'PY'
import importlib.metadata as metadata
import torch, gsplat, pycolmap
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
print('gsplat', gsplat.__version__)
build = metadata.packages_distributions()['pycolmap']
print('pycolmap', pycolmap.__version__, build, 'has_cuda', pycolmap.has_cuda)
PY"
    case $mode in
        quick)
            step gpu-tests 210 "$PYTHON" -m pytest -q -p no:cacheprovider -rs gaussian-splatting/tests/test_gs_cuda.py
            step sfm-cpu-vs-gpu 90 "$PYTHON" bench/sfm.py --datasets "$DATASETS" --device cpu,gpu fountain-p11
            step strategies-kermit-2000 180 "$PYTHON" bench/train.py --datasets "$DATASETS" --backend cuda \
                --strategies ours,default,mcmc --iterations 2000 "${LPIPS[@]}" --json-out "$OUT/train-2000.json" kermit
            ;;
        table)
            shift
            sets=("$@")
            [ ${#sets[@]} -gt 0 ] || sets=(kermit fountain-p11 sceaux)
            for set in "${sets[@]}"; do
                step "strategies-$set" 3600 "$PYTHON" bench/train.py --datasets "$DATASETS" --backend cuda \
                    --strategies ours,default,mcmc --iterations 7000,30000 "${LPIPS[@]}" \
                    --json-out "$OUT/train-table-$set.json" "$set"
            done
            ;;
    esac
    if [ ${#failed[@]} -gt 0 ]; then
        echo "FAILED: ${failed[*]}"
        false
    else
        echo "all steps passed"
    fi
} 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
