#!/usr/bin/env bash
# `make demo`: the whole vgs pipeline on a synthetic audio-visual dataset with the tiny presets, through the
# real CLI only. Ends with FID/KID/ISc/MKL for codebook reconstructions, feature-conditioned and
# unconditioned generation, and a generated wav + mp4 for one held-out video.
# Knobs (environment): DEMO_OUT (folder, default demo_out), CLIPS (default 200), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${DEMO_OUT:-demo_out}
CLIPS=${CLIPS:-200}
JOBS=${JOBS:-2}
VGS=${VGS:-.venv/bin/vgs}
PY=${PY:-.venv/bin/python}
START=$(date +%s)
# The codebook (the demo's longest stage) trains in bf16 where the CPU does bf16 natively (AVX512-BF16 or AMX:
# 1.5x on these steps, measured); elsewhere oneDNN emulates bf16 (~4x slower than fp32), so fp32 there.
# DEMO_PRECISION=fp32|bf16 overrides. (Melception, the vocoder and the transformers gained nothing from it.)
PRECISION=${DEMO_PRECISION:-$($PY -c "from vgs_cli.cpu import cpu_info; print('bf16' if cpu_info().bf16 else 'fp32')")}
step() { printf '\n\033[1m==> [%4ss] %s\033[0m\n' "$(( $(date +%s) - START ))" "$*"; }

DATA=$OUT/data RUNS=$OUT/runs GEN=$OUT/generated EVAL=$OUT/eval
mkdir -p "$RUNS" "$GEN" "$EVAL"

step "1/10 prepare: $CLIPS synthetic 10-s clips (6 classes, real H.264+AAC mp4s) -> HDF5 shards"
$VGS prepare synthetic -o "$DATA" --clips "$CLIPS" --preset tiny -j "$JOBS"

step "2/10 train the spectrogram codebook (VQGAN, tiny preset, $PRECISION)"
$VGS train codebook --data "$DATA" --preset tiny --precision "$PRECISION" -o "$RUNS/codebook"
CODEBOOK=$RUNS/codebook/checkpoints/best.ckpt

# 400 steps, not the tiny preset's 200: the time-aligned (--sync) model needs them to pass the unconditioned one,
# which bottoms out near step 300 on these 140 training clips (its best checkpoint is kept either way).
step "3/10 train the transformer conditioned on visual features (212 frames, time-aligned: --sync)"
$VGS train transformer --data "$DATA" --preset tiny --codebook "$CODEBOOK" --condition feats --feat-frames 212 --sync \
    --steps 400 -o "$RUNS/transformer_feats"

step "4/10 train the unconditioned transformer (the paper's 'no features' baseline), same budget"
$VGS train transformer --data "$DATA" --preset tiny --codebook "$CODEBOOK" --condition none \
    --steps 400 -o "$RUNS/transformer_none"

step "5/10 train the MelGAN vocoder"
$VGS train vocoder --data "$DATA" --preset tiny -o "$RUNS/vocoder"
VOCODER=$RUNS/vocoder/checkpoints/best.ckpt

step "6/10 train Melception, the classifier behind the metrics"
$VGS train melception --data "$DATA" --preset tiny -o "$RUNS/melception"
CLASSIFIER=$RUNS/melception/checkpoints/best.ckpt

step "7/10 codebook reconstructions of the held-out (test) clips"
$VGS codec reconstruct --data "$DATA" --split test --codebook "$CODEBOOK" -o "$GEN/reconstruction" \
    --vocoder melgan --vocoder-ckpt "$VOCODER"  # the trained vocoder, not Griffin-Lim (35 of its 54 s, worse sound)

step "8/10 generate for every held-out clip: feature-conditioned and unconditioned"
for cond in feats none; do
  $VGS generate "$DATA" --split test -o "$GEN/$cond" --samples 2 --transformer "$RUNS/transformer_$cond/checkpoints/best.ckpt" \
      --codebook "$CODEBOOK" --vocoder-ckpt "$VOCODER"
done

step "9/10 evaluate (FID, KID, ISc, MKL with the demo's Melception)"
for name in reconstruction feats none; do
  $VGS eval --real "$DATA:test" --fake "$GEN/$name" --classifier "$CLASSIFIER" --json "$EVAL/$name.json"
done
# Today's protocol (av-benchmark: FD/KL/IS on PaSST, PANNs, VGGish; IB-score; DeSync) where the metric networks'
# published weights are on this machine (`vgs download --metrics`); the others are named, nothing is downloaded.
for name in feats none; do
  $VGS eval --real "$DATA:test" --fake "$GEN/$name" --protocol av-benchmark --skip-missing \
      --json "$EVAL/${name}_av.json"
done

step "10/10 sound for one held-out video (wav + the video with its new sound track)"
VIDEO=$($PY -c "import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x['split']=='test']; print(r[0]['path'])" "$DATA/source/labels.csv")
$VGS generate "$DATA/source/$VIDEO" -o "$OUT/example.wav" --mux "$OUT/example.mp4" --spectrogram "$OUT/example.png" \
    --transformer "$RUNS/transformer_feats/checkpoints/best.ckpt" --codebook "$CODEBOOK" --vocoder-ckpt "$VOCODER"

# The demo's feature-conditioned models become the default model: `vgs generate video.mp4 -o out.wav` (no
# --model) and `vgs serve` use them; `vgs eval` without --classifier uses its Melception (see `vgs models`).
$VGS models default "$RUNS/transformer_feats" --vocoder-ckpt "$VOCODER" --classifier "$CLASSIFIER" --by "make demo"

$PY scripts/demo_summary.py "$EVAL" "$DATA/source/$VIDEO" "$OUT/example.wav" "$OUT/example.mp4" "$(( $(date +%s) - START ))" "$RUNS"

# The demo's models behind a web page + HTTP API (held-out videos as examples; see README, `vgs serve`).
printf '\nNext: sound for any video with the default model (now the demo'"'"'s):\n  %s generate video.mp4 -o out.wav\n' "$VGS"
printf '\nTry the models in a browser (open http://127.0.0.1:7860 once it says "Running"):\n  %s serve --model %s\n' "$VGS" "$OUT"
