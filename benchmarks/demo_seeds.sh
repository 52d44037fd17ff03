#!/usr/bin/env bash
# The synthetic world's rows of benchmarks/README.md ("Demo world, 3 model seeds"): the demo's
# pipeline over 3 model seeds with category queries (the demo itself) and with title queries, the
# joint model's single-task versions over the same seeds, then `gensar report` over each world.
# Every run prints and stores its baselines on the same examples (metrics.json -> baselines), so the
# report has GenSAR (hybrid, generative alone), SASRec, BM25, dense, match-popularity, content and
# popularity, sampled and over the whole catalog, valid beside test.
#
#   benchmarks/demo_seeds.sh           # everything, one run after another (36 min on 2 idle cores, 2026-12-06)
#   benchmarks/demo_seeds.sh report    # the reports only, from the runs already finished
#
# Each pipeline run caches its stages: rerunning skips what is finished and resumes a killed training.
set -euo pipefail
cd "$(dirname "$0")/.."
export GENSAR_THREADS="${GENSAR_THREADS:-2}" HF_HUB_OFFLINE=1
P="${RUNS_PREFIX:-runs/demo-}"
BASE=configs/synthetic.yaml

pipeline() {  # NAME SEED [extra args...]; data and IDs copied from seed 0 of the same world
  local name=$1 seed=$2; shift 2
  local world=category reuse=()
  [[ " $* " == *query_source=title* ]] && world=title
  [[ -f "$P$world-s0/stages.json" && "$name-s$seed" != "$world-s0" ]] && reuse=(--reuse "$P$world-s0")
  gensar pipeline --config "$BASE" "$@" --set model.train.seed="$seed" --out "$P$name-s$seed" "${reuse[@]}"
}

runs() {  # the joint model first, so an interrupted lane still has whole seeds to report
  for seed in 0 1 2; do pipeline category "$seed"; done
  for seed in 0 1 2; do pipeline title "$seed" --set data.synth.query_source=title; done
  for seed in 0 1 2; do
    pipeline rec-only "$seed" --config configs/variants/rec-only.yaml
    pipeline search-only "$seed" --config configs/variants/search-only.yaml
  done
}

finished() { for run in "$@"; do [[ -f "$run/metrics.json" ]] && echo "$run"; done; }

report() {
  local category title
  mapfile -t category < <(finished "$P"{category,rec-only,search-only}-s{0,1,2})
  mapfile -t title < <(finished "$P"title-s{0,1,2})
  [[ ${#category[@]} -gt 0 ]] && gensar report "${category[@]}" --out "${P}report-category" --overwrite
  [[ ${#title[@]} -gt 0 ]] && gensar report "${title[@]}" --out "${P}report-title" --overwrite
  return 0
}

case "${1:-all}" in
  all) runs; report ;;
  report) report ;;
  *) echo "usage: $0 [all|report]" >&2; exit 2 ;;
esac
