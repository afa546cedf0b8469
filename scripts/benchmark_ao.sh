#!/usr/bin/env bash
# The reference Aquila-optimizer benchmark of issue 4 (docs/aquila-benchmark.md):
# 8 functions in 30 D, plain and shifted, 10 seeds × 500 iterations, emodesk's AO and its
# variants against mealpy's OriginalAO and scipy's differential evolution.
#
# Resumable: each finished (function, optimizer, seed) run is appended to
# build/aquila-benchmark-runs.jsonl and reused, so a killed run picks up where it stopped
# (delete that file to measure everything afresh). Runs under nice; takes ~30 min on 2 cores.
# Extra arguments are passed on, e.g. --functions sphere,rastrigin.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p build
# python -m emodesk.cli.fusion_cmd is `emodesk fusion` without the top-level dispatcher.
exec nice -n 10 "$PY" -m emodesk.cli.fusion_cmd benchmark-ao --seeds 10 --iterations 500 --shifted \
  --cache build/aquila-benchmark-runs.jsonl \
  --json docs/aquila-benchmark.json --markdown docs/aquila-benchmark.md "$@"
