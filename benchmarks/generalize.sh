#!/usr/bin/env bash
# Issue 14 section 4 and issue 19 section 2 on the real datasets: the hybrid against every baseline
# over 3 model seeds, both protocols, valid beside test (amazon-scientific: the first 2,000 test
# examples per behavior, every method on the same ones; ml-100k's 943 users: all). One run per call, so a session runs what
# fits and a later one continues (each pipeline run caches its stages and resumes its training):
#
#   benchmarks/generalize.sh ml100k SEED      # ml-100k, no config written (gensar.defaults), ~70 min
#   benchmarks/generalize.sh sci SEED         # amazon-scientific, configs/scientific.yaml, category queries
#   benchmarks/generalize.sh sci-title SEED   # the same with title queries
#   benchmarks/generalize.sh report           # one gensar report per dataset over the finished seeds
#
# Nothing here is chosen on test: the configs are fixed before the runs, the hybrid fits on valid.
set -euo pipefail
cd "$(dirname "$0")/.."
export GENSAR_THREADS="${GENSAR_THREADS:-2}" HF_HUB_OFFLINE=1
P="${RUNS_PREFIX:-runs/gen-}"
DATA=../shared/data

run() {  # NAME SEED [pipeline args...]; data and IDs copied from the same dataset's seed 0
  local name=$1 seed=$2; shift 2
  local reuse=()
  [[ "$seed" != 0 && -f "$P$name-s0/stages.json" ]] && reuse=(--reuse "$P$name-s0")
  gensar pipeline "$@" --set model.train.seed="$seed" --out "$P$name-s$seed" "${reuse[@]}"
}

finished() { for r in "$@"; do [[ -f "$r/metrics.json" ]] && echo "$r"; done; }

report() {
  local name runs
  for name in ml100k sci sci-title; do
    mapfile -t runs < <(finished "$P$name"-s{0,1,2})
    [[ ${#runs[@]} -gt 0 ]] && gensar report "${runs[@]}" --out "$P$name-report" --overwrite
  done
  return 0
}

case "${1:-}" in
  ml100k) run ml100k "${2:?seed}" --data "$DATA/ml-100k" ;;
  sci) run sci "${2:?seed}" --config configs/scientific.yaml --set eval.max_examples=2000 ;;
  sci-title) run sci-title "${2:?seed}" --config configs/scientific.yaml --set eval.max_examples=2000 \
               --set data.prepare.query_source=title ;;
  report) report ;;
  *) echo "usage: $0 ml100k|sci|sci-title SEED | report" >&2; exit 2 ;;
esac
