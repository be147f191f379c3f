#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py; docs/benchmarks.md "GPU check"): CUDA tests, model latency
# per stage (occ3d_tiny / small / base, fp32 + fp16), paper Table 3, one occ3d_small training step, the demo through
# the node on CUDA; writes benchmarks/results/gpu*.json. Under 8 minutes on one modern GPU.
#   bash benchmarks/gpu_check.sh               # needs the CUDA build of torch (see the error message otherwise)
#   bash benchmarks/gpu_check.sh --dry-run     # this CPU machine: the same chain at tiny sizes (runs/gpu_check_dry_run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$ROOT/.venv/protoocc_env.sh" ]; then
  # shellcheck disable=SC1091
  source "$ROOT/.venv/protoocc_env.sh"
fi
cd "$ROOT"
exec python benchmarks/gpu_check.py "$@"
