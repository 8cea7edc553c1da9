#!/usr/bin/env bash
# 100-epoch runs on a one-GPU, 16-core machine: five-fold cross-validation of one variant (every fold in its own
# process) and the final model on all four-class photos, side by side. Augmentation runs on the CPU (about 3.5 ms
# a photo on one core), so that is what bounds the run; each fold gets FOLD_WORKERS loader workers and the final
# model, which has the most photos, FINAL_WORKERS. Whatever finishes before LIMIT seconds is packed into OUT; an
# unfinished run leaves its per-epoch partial checkpoint there too, so `python -m ml.crossval` or
# `python -m ml.train --resume` can finish it elsewhere.
# Data: DATA is made by `python -m ml.scripts.gpu_data` (mpox-skin downscaled to the loader's 256-pixel training
# size), because the device machine cannot read ../shared and its working tree is capped at 64 MiB.
#   VARIANT=fast_mpoxnet                             the run of 2026-11-26 04:00 (shipped until outlier exposure)
#   VARIANT=fast_mpoxnet_oe OUTLIERS=hfmd,other,smallpox   outlier exposure, cross-validated and final
#   VARIANT=fast_mpoxnet_paper_folds FINAL=0         the paper's leaky folds; no final model (it would be fast_mpoxnet)
#   VARIANT=fast_mpoxnet_scratch FINAL=0             the ablation; baselines are not shipped
set -u
DATA=${DATA:-.gpudata/mpox-skin}
BACKBONE=${BACKBONE:-.gpudata/shufflenetv2_x0.5_backbone_tv.pth}
VARIANT=${VARIANT:-fast_mpoxnet}
OUTLIERS=${OUTLIERS:-}
EPOCHS=${EPOCHS:-100}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-520}
FOLD_WORKERS=${FOLD_WORKERS:-3}
FINAL_WORKERS=${FINAL_WORKERS:-3}
FINAL=${FINAL:-1}
RUN=${RUN:-/tmp/gpu-run}
OUT=${OUT:-/tmp/gpu-out}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$RUN/final" "$OUT"
common=(--data "$DATA" --backbone "$BACKBONE" --device "$DEVICE" --threads 1)
nproc; nvidia-smi -L 2>/dev/null; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
started=$(date +%s)
if [ "$FINAL" = 1 ]; then
    timeout "$LIMIT" "$PYTHON" -m ml.train "${common[@]}" --out "$RUN/final/$VARIANT.pt" --epochs "$EPOCHS" \
        --workers "$FINAL_WORKERS" ${OUTLIERS:+--outlier-exposure "$OUTLIERS"} >"$RUN/final/train.log" 2>&1 &
fi
timeout "$LIMIT" "$PYTHON" -m ml.crossval "${common[@]}" --out "$RUN/crossval" --variants "$VARIANT" \
    --epochs "$EPOCHS" --jobs 5 --workers "$FOLD_WORKERS" --no-report >"$RUN/$VARIANT.log" 2>&1 &
wait
echo "finished in $(( $(date +%s) - started )) s"
ls -la "$RUN/crossval/folds" "$RUN/final" 2>&1
tail -n 2 "$RUN"/crossval/logs/*.log "$RUN/final/train.log" 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -n 40
# At most 8 files of 16 MB come back: the results in one, each unfinished run's partial in its own.
tar czf "$OUT/results.tar.gz" -C "$RUN" --exclude='*.partial' --exclude='partial' .
for partial in "$RUN"/crossval/partial/"$VARIANT"_fold*.pt "$RUN"/final/*.partial; do
    [ -f "$partial" ] && cp "$partial" "$OUT/"
done
ls -la "$OUT"
