#!/usr/bin/env bash
# masam-conv3d GPU check (docs/conv3d.md, "GPU check").
#   bash scripts/gpu-check.sh build   # here, no GPU needed: builds .gpu/gpu_check (~10 min clean)
#   bash scripts/gpu-check.sh run     # on the GPU machine: parity + timings, one JSON object
# The build machine needs ../shared/tools/cuda-env.sh (CUDA 13.0 from PyPI); the GPU machine needs
# only the NVIDIA driver and the CUDA 13 runtime libraries (cublas, curand, cudart, nvrtc).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  build)
    ENV_SCRIPT=${MASAM_CUDA_ENV:-../shared/tools/cuda-env.sh}
    eval "$(bash "$ENV_SCRIPT")"
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} \
      cargo build --release --features cuda --example gpu_check
    mkdir -p .gpu
    cp "${CARGO_TARGET_DIR:-target/cuda}/release/examples/gpu_check" .gpu/gpu_check
    ls -l .gpu/gpu_check
    ;;
  run)
    [ -x .gpu/gpu_check ] || { echo "no .gpu/gpu_check: run '$0 build' first and carry .gpu" >&2; exit 2; }
    L=""
    for lib in libcublas.so.13 libnvrtc.so.13 libcurand.so.10 libcudart.so.13; do
      f=$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1 || true)
      [ -n "$f" ] && L="$L:$(dirname "$f")"
    done
    export LD_LIBRARY_PATH="${L#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi -L >&2 || true
    ./.gpu/gpu_check
    ;;
  *)
    echo "usage: $0 build|run" >&2; exit 2;;
esac
