#!/usr/bin/env bash
# The 100-epoch runs on a one-GPU, 16-core machine: five-fold cross-validation of Fast-MpoxNet and of
# ShuffleNetV2-x0.5 (every fold in its own process), and the final model on all four-class photos, side by side.
# Augmentation runs on the CPU (about 6.5 ms a photo on one core), so Fast-MpoxNet's runs get three loader workers
# each and the baseline runs at low priority. Whatever finishes before LIMIT seconds is packed into OUT; an
# unfinished fold leaves its per-epoch partial checkpoint there too, so `python -m ml.crossval` can resume it.
# Data: DATA is a copy of mpox-skin downscaled to a 256-pixel short side (the loader's training size), because the
# device machine cannot read ../shared and its working tree is capped at 64 MiB.
set -u
DATA=${DATA:-.gpudata/mpox-skin}
BACKBONE=${BACKBONE:-.gpudata/shufflenetv2_x0.5_backbone_tv.pth}
EPOCHS=${EPOCHS:-100}
DEVICE=${DEVICE:-cuda}
LIMIT=${LIMIT:-520}
RUN=${RUN:-/tmp/gpu-run}
OUT=${OUT:-/tmp/gpu-out}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$RUN/final" "$OUT"
common=(--data "$DATA" --backbone "$BACKBONE" --device "$DEVICE" --threads 1)
nproc; nvidia-smi -L 2>/dev/null; "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
started=$(date +%s)
timeout "$LIMIT" "$PYTHON" -m ml.train "${common[@]}" --out "$RUN/final/fast_mpoxnet.pt" --epochs "$EPOCHS" \
    --workers 3 >"$RUN/final/train.log" 2>&1 &
timeout "$LIMIT" "$PYTHON" -m ml.crossval "${common[@]}" --out "$RUN/crossval" --variants fast_mpoxnet \
    --epochs "$EPOCHS" --jobs 5 --workers 3 --no-report >"$RUN/fast_mpoxnet.log" 2>&1 &
timeout "$LIMIT" nice -n 19 "$PYTHON" -m ml.crossval "${common[@]}" --out "$RUN/crossval" \
    --variants shufflenet_v2_x0_5 --epochs "$EPOCHS" --jobs 5 --workers 1 --no-report >"$RUN/shufflenet.log" 2>&1 &
wait
echo "finished in $(( $(date +%s) - started )) s"
ls -la "$RUN/crossval/folds" "$RUN/final" 2>&1
tail -n 2 "$RUN"/crossval/logs/*.log "$RUN/final/train.log" 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -n 40
# At most 8 files of 16 MB come back: the results in one, each unfinished Fast-MpoxNet partial in its own.
tar czf "$OUT/results.tar.gz" -C "$RUN" --exclude='*.partial' --exclude='partial' .
for partial in "$RUN"/crossval/partial/fast_mpoxnet_fold*.pt "$RUN"/final/*.partial; do
    [ -f "$partial" ] && cp "$partial" "$OUT/"
done
ls -la "$OUT"
