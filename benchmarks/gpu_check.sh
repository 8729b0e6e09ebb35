#!/usr/bin/env bash
# The GPU checks, as one script for a lent machine (about 8 minutes on one H200):
#   1. parity and precision on CUDA (the official fixtures in tests/data);
#   2. FLOP per step (meta device) before/after the shared UNet prefix;
#   3. speed and memory at 512², fp16, K 16, random weights at the released sizes, 16 / 96 / 752 frames, for the
#      default, --compile and --low-vram, plus the unshared prefix (the official UNet arithmetic) at 16 frames;
#   4. PSNR of each setting's frames against the default's (same weights, inputs and seed);
#   5. training (TRAIN=0 skips it): FLOPs per step at the released size, then the headline step rows, random
#      weights at the released sizes: stage 1 at 512² batch 1 and stage 2 with 16 frames at 512², each in fp32
#      AdamW, bf16 + 8-bit Adam, bf16 + LoRA 16, and bf16 + checkpointing + 8-bit Adam (the 24 GB target); every
#      row prints ms/step, samples/s, TFLOP/s, the share of the GPU's bf16 peak and the peak memory beside the
#      dry-run's estimate. A row that runs out of memory prints the error and the script goes on.
# Needs the wheels the GPU image lacks in .whl/ (diffusers, importlib_metadata, av; for training's rows
# bitsandbytes and peft with its dependency transformers), e.g.
#   pip download --no-deps -d .whl diffusers==0.42.1 importlib_metadata av==18.1.0 bitsandbytes peft transformers
# Results: $OUT/gpu.log and $OUT/*.npz. The side-by-side with the official code is ../shared/official-bench
# (its README: prepare.sh here, then bash .obench/bench.sh there).
set -u
python3 -m pip install --no-deps --no-index -q .whl/*.whl 2>&1 | grep -v -i warning | tail -2
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
step() { echo "== $*"; timeout "${STEP_TIMEOUT:-300}" "$@" 2>&1 | grep -v "should be kept in float32" | tee -a "$out/gpu.log"; }
FRAMES=${FRAMES:-"16 96 752"}
STEPS=${STEPS:-2}
engine() { step python3 benchmarks/engine.py --full-size --device cuda --dtype fp16 --size 512 --steps "$STEPS" "$@"; }
step python3 benchmarks/precision.py --device cuda --case public_a
step python3 benchmarks/precision.py --device cuda --case public_b
step python3 benchmarks/flops.py
engine --frames $FRAMES --save "$out/default.npz"
engine --frames $FRAMES --low-vram --save "$out/low-vram.npz"
engine --frames $FRAMES --compile --save "$out/compile.npz"
engine --frames 16 --no-shared-prefix --save "$out/unshared.npz"
step python3 benchmarks/psnr.py "$out/default.npz" "$out/low-vram.npz" "$out/compile.npz" "$out/unshared.npz"
if python3 -c "import av" 2>/dev/null; then  # the long-video job encodes with PyAV
  step python3 benchmarks/long_video.py --full-size --device cuda --size 512 --steps 2
fi
if [ "${TRAIN:-1}" != 0 ]; then
  step python3 benchmarks/train_step.py --flops
  train() { step python3 benchmarks/train_step.py --full-size --device cuda --size 512 --steps "${TRAIN_STEPS:-3}" "$@"; }
  for shape in "--stage 1 --batch-size 1" "--stage 2 --frames 16"; do
    train $shape
    train $shape --precision bf16 --optimizer adamw8bit
    train $shape --precision bf16 --lora 16
    train $shape --precision bf16 --optimizer adamw8bit --gradient-checkpointing
  done
fi
