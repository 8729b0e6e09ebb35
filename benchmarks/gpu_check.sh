#!/usr/bin/env bash
# The GPU checks, as one script for a lent machine: parity and precision on CUDA, then speed and memory at 512².
# Needs the wheels the GPU image lacks in .whl/ (diffusers, importlib_metadata, av), e.g.
#   pip download --no-deps -d .whl diffusers==0.42.1 importlib_metadata av==18.1.0
set -u
python3 -m pip install --no-deps --no-index -q .whl/*.whl 2>&1 | grep -v -i warning | tail -2
export PYTHONPATH="$PWD/src:$PWD/benchmarks" PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
step() { echo "== $*"; timeout "${STEP_TIMEOUT:-240}" "$@" 2>&1 | grep -v "should be kept in float32" | tee -a "$out/gpu.log"; }
step python3 benchmarks/precision.py --device cuda --case public_a
step python3 benchmarks/precision.py --device cuda --case public_b
step python3 benchmarks/engine.py --full-size --device cuda --dtype fp16 --size 512 --frames 16 32 96 --steps 4
if python3 -c "import av" 2>/dev/null; then  # the long-video job encodes with PyAV
  step python3 benchmarks/long_video.py --full-size --device cuda --size 512 --steps 2
fi
