#!/usr/bin/env bash
# The main job of the README: set up (idempotent) and run the demo. Arguments go to protoocc-demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
# shellcheck disable=SC1091
source "$ROOT/.venv/protoocc_env.sh"
cd "$ROOT"
exec python -m protoocc_ros.tools.demo "$@"
