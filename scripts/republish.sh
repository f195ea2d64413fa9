#!/usr/bin/env bash
# The published results (results/), regenerated from one clean commit into a fresh store and cache.
#   bash scripts/republish.sh run      # every suite for every method on ptbxl_1819 (about an hour on 2 CPU cores at EPOCHS=3)
#   bash scripts/republish.sh publish  # tables, leaderboard, figures, bundle and page from that store
# Settings (the budget is said in results/README.md): EPOCHS pretraining epochs of every cpu_small encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:?usage: republish.sh run|publish}
EPOCHS=${EPOCHS:-3}
STORE=${PUBLISH_STORE:-$PWD/.publish}
export BENCH_CACHE=${BENCH_CACHE:-$STORE/cache}
BENCH=${BENCH:-.venv/bin/bench}
METHODS=merit,merit_mse,merit_cma,merit_ib,stmem,merl,d_beta,ecg_fm,ecgfounder,ecgjepa,hubert_ecg,melp,random,signal_stats
STORE_ARGS=("tracking.uri=sqlite:///$STORE/mlflow.db" "tracking.artifacts=$STORE/artifacts" "pretrain.epochs=$EPOCHS")

if [ -n "$(git status --porcelain --untracked-files=no -- . ':!results')" ]; then  # results/ is what this writes
  echo "refusing: the code has uncommitted changes; published numbers come from one clean commit" >&2
  exit 1
fi
mkdir -p "$STORE"
case "$STAGE" in
  run)
    git rev-parse HEAD > "$STORE/commit"
    $BENCH run --suite linear --methods "$METHODS" --datasets ptbxl_1819 --fractions 0.01,0.1,1 "${STORE_ARGS[@]}"
    $BENCH run --suite zero_shot --methods "$METHODS" --datasets ptbxl_1819 "${STORE_ARGS[@]}"
    $BENCH run --suite subgroup --methods "$METHODS" --datasets ptbxl_1819 --fractions 1 "${STORE_ARGS[@]}"
    $BENCH run --suite robustness --methods "$METHODS" --datasets ptbxl_1819 "${STORE_ARGS[@]}"
    ;;
  publish)
    # the figures re-read embeddings from the cache the runs used; the rest reads the store only
    $BENCH publish --dataset ptbxl_1819 "${STORE_ARGS[@]}"
    $BENCH verify results
    ;;
  *) echo "unknown stage $STAGE (run | publish)" >&2; exit 2 ;;
esac
