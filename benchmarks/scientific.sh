#!/usr/bin/env bash
# Every amazon-scientific result in benchmarks/README.md ("Search and recommendation results"):
# GenSAR over 3 seeds, its variants (one config layer each, configs/variants/), the baselines on
# the same prepared data and candidate lists, then `gensar report`.
#
#   benchmarks/scientific.sh            # everything, one job after another
#   benchmarks/scientific.sh a & benchmarks/scientific.sh b   # the headline runs, two lanes of one core (~115 min each)
#   benchmarks/scientific.sh variants   # weight-decay ablations, then the method's (~8 h on one core)
#   benchmarks/scientific.sh ablations-a & benchmarks/scientific.sh ablations-b   # the method's only (~80 / ~90 min)
#   benchmarks/scientific.sh report
#
# Each pipeline run caches its stages: rerunning the script skips what is finished, resumes an
# interrupted training from its checkpoint, and copies data/IDs from the first run (--reuse).
# Bash reads a script while it runs it: edit a copy, not this file, while a lane is running.
set -euo pipefail
cd "$(dirname "$0")/.."
export GENSAR_THREADS="${GENSAR_THREADS:-1}"  # one core per job; two lanes fill this 2-core machine
P="${RUNS_PREFIX:-runs/sci-}"
BASE=configs/scientific.yaml
FIRST="${P}joint-s0"

pipeline() {  # NAME [extra args...]
  local name=$1; shift
  local reuse=()
  [[ "$name" != joint-s0 && -f "$FIRST/stages.json" ]] && reuse=(--reuse "$FIRST")
  gensar pipeline --config "$BASE" "$@" --out "$P$name" "${reuse[@]}"
}
variant() { pipeline "$1" --config "configs/variants/$1.yaml"; }
variant_seed() { pipeline "$1-s$2" --config "configs/variants/$1.yaml" --set model.train.seed="$2"; }  # NAME SEED (seed 0: `variant NAME`)
wait_for_data() { until [[ -f "$FIRST/ids/item_ids.json" ]]; do sleep 30; done; }

baselines() {
  wait_for_data
  local data="$FIRST/data"
  for seed in 0 1 2; do
    [[ -f "${P}sasrec-s$seed/metrics.json" ]] || \
      gensar sasrec "$data" --protocol gensar --set seed=$seed --quiet --out "${P}sasrec-s$seed" --overwrite
  done
  for name in popularity bm25 dense match-popularity; do
    [[ -f "$P$name/metrics.json" ]] || gensar baseline $name "$data" --out "$P$name" --overwrite
  done
}

# Two lanes of about equal length (measured runs: joint ~35 min, search-only ~20, rec-only ~17, the
# baselines ~10): GenSAR and its single-task versions over 3 seeds, the baselines.
lane_a() { pipeline joint-s0; pipeline joint-s1 --set model.train.seed=1; variant search-only; variant_seed search-only 1; }
lane_b() { wait_for_data; baselines; pipeline joint-s2 --set model.train.seed=2
           variant rec-only; variant_seed rec-only 1; variant_seed rec-only 2; variant_seed search-only 2; }
# Ablations: weight decay (wd0.01 = the previous config, over 3 seeds, its single-task versions and
# 18 epochs; the two after it were measured at wd 0.01), then the paper's tasks only, no auxiliary
# tasks, single-ID variants, TIGER-style.
variants() { wait_for_data
             pipeline wd0.1-s0 --set model.train.weight_decay=0.1
             pipeline wd1.0-s0 --set model.train.weight_decay=1.0
             local wd=(--set model.train.weight_decay=0.01)
             for seed in 0 1 2; do pipeline wd0.01-s$seed "${wd[@]}" --set model.train.seed=$seed; done
             pipeline wd0.01-rec-only --config configs/variants/rec-only.yaml "${wd[@]}"
             pipeline wd0.01-search-only --config configs/variants/search-only.yaml "${wd[@]}"
             for seed in 0 1; do pipeline wd0.01-e18-s$seed "${wd[@]}" --set model.train.epochs=18 --set model.train.seed=$seed; done
             pipeline wd0.01-category-ids "${wd[@]}" --set ids.semantic.category_weight=1.0  # category-weighted semantic IDs
             pipeline wd0.01-adhoc-v1-e12 "${wd[@]}" --set model.tasks.adhoc=0.25 --set model.tasks.pseudo_queries=3  # old ad-hoc mix
             ablations; }
# The method's ablations at the headline config, in two lanes (measured, IDs and evaluation included:
# semantic-ids 41 min, collaborative-ids 36, no-aux 33, paper-tasks 29, tiger 29).
ablations_a() { wait_for_data; variant semantic-ids; variant collaborative-ids; }
ablations_b() { wait_for_data; variant paper-tasks; variant no-aux; variant tiger; }
ablations() { ablations_a; ablations_b; }

report() {
  local runs=()
  for name in joint-s0 joint-s1 joint-s2 rec-only rec-only-s1 rec-only-s2 search-only search-only-s1 search-only-s2 \
              paper-tasks no-aux semantic-ids collaborative-ids \
              tiger wd0.1-s0 wd1.0-s0 wd0.01-s0 wd0.01-s1 wd0.01-s2 wd0.01-rec-only wd0.01-search-only wd0.01-e18-s0 \
              wd0.01-e18-s1 wd0.01-category-ids wd0.01-adhoc-v1-e12 \
              sasrec-s0 sasrec-s1 sasrec-s2 popularity bm25 dense match-popularity; do
    [[ -f "$P$name/metrics.json" ]] && runs+=("$P$name")
  done
  gensar report "${runs[@]}" --out "${P}report" --overwrite
}

case "${1:-all}" in
  a) lane_a ;;
  b) lane_b ;;
  variants) variants ;;
  ablations-a) ablations_a ;;
  ablations-b) ablations_b ;;
  report) report ;;
  all) lane_a; lane_b; variants; report ;;
  *) echo "usage: $0 [all|a|b|variants|ablations-a|ablations-b|report]" >&2; exit 2 ;;
esac
