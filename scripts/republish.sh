#!/usr/bin/env bash
# The published results (results/), regenerated from one clean commit into a fresh store and cache.
#   bash scripts/republish.sh run      # every suite below on ptbxl_1819 (about 2.5 h on 2 CPU cores, linear 1 h of it; times in $STORE/times.txt)
#   bash scripts/republish.sh publish  # tables, leaderboard, figures, bundle, page and README from that store; then bench verify
# What each table covers (its title says it too):
#   linear fixed 1/10/100 %, zero-shot: every method, seeds 0,1,2 (pretraining, head and label draw per seed)
#   linear fixed 1/10/100 % for the reality check's encoders and architectures (ECG-CPC, HeartLang, ECGFM-KED at
#     cpu_small; xresnet1d101 and S4 untrained), seeds 0,1,2 (stage linear_new)
#   linear cv10 (the MERIT paper's protocol, cross-fitted pretraining per half): MERIT, its ablations and the controls, seed 0
#   modes (attentive, fine-tuning, scratch beside linear) on super: MERIT, ECG-FM, HuBERT-ECG and signal_stats (stage modes),
#     ST-MEM, ECGFounder, ECG-CPC and xresnet1d101 (stage modes_new), seeds 0,1,2, at a CPU budget (20 attentive epochs, 2 fine-tuning / scratch epochs)
#   transfer PTB-XL super -> CPSC2018 on real records (cpsc2018_150) for every method, seeds 0,1,2; the other five
#     directions on synthetic demo data for MERIT and the controls, seed 0
#   text generation: MERIT, random and the LLM-only control, seed 0, 64 training / 32 test reports, 1 epoch
#   subgroup and robustness audits: every method, seed 0, all labels
#   report_text: the reports' own ceiling (TF-IDF + logistic regression on the pretraining text, no ECG)
#   patient: sex (linear) and age, height, weight, BMI (regression, ridge) for every method, seeds 0,1,2
#   leads: the linear probe on lead sets 12, 2 (I, II) and I for six methods, seeds 0,1,2; the attentive probe on 2 and I
#     for MERIT, ST-MEM, ECG-FM and ECGFounder, seeds 0,1,2 (beside their 12-lead attentive cells of stage modes / modes_new)
# Settings: EPOCHS pretraining epochs of every cpu_small encoder; STAGES a space-separated subset of the stage names
# below (default all; a finished stage is skipped anyway, its units being in the store); FIGURES=0 publishes without
# redrawing results/figures (the UMAP figure re-encodes records, pretraining any checkpoint the cache lacks).
set -euo pipefail
cd "$(dirname "$0")/.."
#   RERUN="..." bash scripts/republish.sh rerun   # only the commands in RERUN (one bench run per line, after `bench`), into $STORE
#   bash scripts/republish.sh supersede           # results/ from its bundle, the cells $STORE (and EXTRA_STORES) ran again
#                                                 # replacing theirs; then verify
STAGE=${1:?usage: republish.sh run|publish|rerun|supersede}
EPOCHS=${EPOCHS:-3}
STORE=${PUBLISH_STORE:-$PWD/.publish}
export BENCH_CACHE=${BENCH_CACHE:-$STORE/cache}
export BENCH_HOME=$STORE/workspace
BENCH=${BENCH:-.venv/bin/bench}
METHODS=merit,merit_mse,merit_cma,merit_ib,stmem,merl,d_beta,ecg_fm,ecgfounder,ecgjepa,hubert_ecg,melp,random,signal_stats
NEW_METHODS=ecg_cpc,heartlang,ecgfm_ked,xresnet1d101,s4
MODE_SETTINGS=(modes.common.epochs=20 modes.finetune.epochs=2 modes.scratch.epochs=2)
ABLATION=merit,merit_mse,merit_cma,merit_ib,random,signal_stats
LEAD_METHODS=merit,stmem,ecg_fm,ecgfounder,heartlang,signal_stats
STORE_ARGS=("tracking.uri=sqlite:///$STORE/mlflow.db" "tracking.artifacts=$STORE/artifacts" "pretrain.epochs=$EPOCHS")
REAL_TRANSFER=("transfer.families.ptbxl_super.dataset=ptbxl_1819" "transfer.families.cpsc2018.dataset=cpsc2018_150")

if [ -n "$(git status --porcelain --untracked-files=no -- . ':!results')" ]; then  # results/ is what this writes
  echo "refusing: the code has uncommitted changes; published numbers come from one clean commit" >&2
  exit 1
fi
mkdir -p "$STORE"
STAGES=${STAGES:-all}
timed() {  # timed NAME COMMAND...: run a stage (if STAGES names it) and append its wall time to $STORE/times.txt
  local name=$1 start=$SECONDS
  shift
  if [ "$STAGES" != all ] && [[ " $STAGES " != *" $name "* ]]; then return 0; fi
  "$@"
  echo "$name $((SECONDS - start)) s" >> "$STORE/times.txt"
}
case "$STAGE" in
  run)
    git rev-parse HEAD >> "$STORE/commit"
    timed linear_fixed $BENCH run --suite linear --methods "$METHODS" --datasets ptbxl_1819 --fractions 0.01,0.1,1 --seeds 0,1,2 "${STORE_ARGS[@]}"
    timed linear_new $BENCH run --suite linear --methods "$NEW_METHODS" --datasets ptbxl_1819 --fractions 0.01,0.1,1 --seeds 0,1,2 "${STORE_ARGS[@]}"
    timed zero_shot $BENCH run --suite zero_shot --methods "$METHODS" --datasets ptbxl_1819 --seeds 0,1,2 "${STORE_ARGS[@]}"
    timed report_text $BENCH run --suite report_text --methods report_text --datasets ptbxl_1819 "${STORE_ARGS[@]}"
    timed linear_cv10 $BENCH run --suite linear --methods "$ABLATION" --datasets ptbxl_1819 --protocols cv10 --fractions 0.01,0.1,1 --seeds 0 "${STORE_ARGS[@]}"
    timed transfer_real $BENCH run --suite transfer --methods "$METHODS" --directions ptbxl_super:cpsc2018 --seeds 0,1,2 "${STORE_ARGS[@]}" "${REAL_TRANSFER[@]}"
    timed transfer_demo $BENCH run --suite transfer --methods merit,random,signal_stats --seeds 0 \
      --directions ptbxl_super:csn,cpsc2018:csn,cpsc2018:ptbxl_super,csn:ptbxl_super,csn:cpsc2018 "${STORE_ARGS[@]}"
    timed modes $BENCH run --suite linear --methods merit,ecg_fm,hubert_ecg,signal_stats --datasets ptbxl_1819 --tasks super --fractions 1 \
      --seeds 0,1,2 --modes linear,attentive,finetune,scratch "${MODE_SETTINGS[@]}" "${STORE_ARGS[@]}"
    # their linear cells are the linear_fixed / linear_new stages' units
    timed modes_new $BENCH run --suite linear --methods stmem,ecgfounder,ecg_cpc,xresnet1d101 --datasets ptbxl_1819 --tasks super \
      --fractions 1 --seeds 0,1,2 --modes attentive,finetune,scratch "${MODE_SETTINGS[@]}" "${STORE_ARGS[@]}"
    timed subgroup $BENCH run --suite subgroup --methods "$METHODS" --datasets ptbxl_1819 --fractions 1 --seeds 0 "${STORE_ARGS[@]}"
    timed robustness $BENCH run --suite robustness --methods "$METHODS" --datasets ptbxl_1819 --seeds 0 "${STORE_ARGS[@]}"
    # patient characteristics (sex a label task, age/height/weight/BMI regression targets) and reduced lead sets
    timed patient $BENCH run --suite linear --methods "$METHODS,$NEW_METHODS" --datasets ptbxl_1819 --tasks sex --fractions 1 \
      --seeds 0,1,2 "${STORE_ARGS[@]}"
    timed regression $BENCH run --suite regression --methods "$METHODS,$NEW_METHODS" --datasets ptbxl_1819 --seeds 0,1,2 "${STORE_ARGS[@]}"
    timed leads $BENCH run --suite linear --methods "$LEAD_METHODS" --datasets ptbxl_1819 --tasks super --fractions 1 \
      --seeds 0,1,2 --leads 12,2,I "${STORE_ARGS[@]}"
    timed leads_attentive $BENCH run --suite linear --methods merit,stmem,ecg_fm,ecgfounder --datasets ptbxl_1819 --tasks super \
      --fractions 1 --seeds 0,1,2 --modes attentive --leads 2,I "${MODE_SETTINGS[@]}" "${STORE_ARGS[@]}"
    timed textgen $BENCH run --suite textgen --methods merit,random,llm_only --datasets ptbxl_1819 --seeds 0 \
      textgen.train_size=64 textgen.test_size=32 textgen.epochs=1 textgen.max_new_tokens=48 "${STORE_ARGS[@]}"
    ;;
  publish)
    # aggregates re-written by an older bench carry its code version: give them their units' provenance (idempotent)
    $BENCH runs repool "${STORE_ARGS[@]}"
    # the figures re-read embeddings from the cache the runs used; the rest reads the store only
    $BENCH publish --dataset ptbxl_1819 $([ "${FIGURES:-1}" = 0 ] && echo --no-figures) --readme configs/publication/results_readme.md "${STORE_ARGS[@]}" "${REAL_TRANSFER[@]}"
    $BENCH verify results
    ;;
  rerun)
    git rev-parse HEAD >> "$STORE/commit"
    while IFS= read -r line; do
      [ -n "$line" ] || continue
      eval "set -- $line"
      timed "rerun" $BENCH run "$@" "${STORE_ARGS[@]}"
    done <<< "${RERUN:?RERUN: one bench run per line}"
    ;;
  supersede)
    $BENCH publish --from-bundle results --with-runs "sqlite:///$STORE/mlflow.db" --readme configs/publication/results_readme.md \
      $(for extra in ${EXTRA_STORES:-}; do echo --with-runs "sqlite:///$extra/mlflow.db"; done)
    $BENCH verify results
    ;;
  *) echo "unknown stage $STAGE (run | publish | rerun | supersede)" >&2; exit 2 ;;
esac
