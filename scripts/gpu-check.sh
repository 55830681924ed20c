#!/usr/bin/env bash
# masam GPU check (docs/conv3d.md "GPU check", docs/gpu.md).
#   bash scripts/gpu-check.sh build   # here, no GPU needed: builds .gpu/gpu_check (~10 min clean)
#   bash scripts/gpu-check.sh run     # on the GPU machine: parity + timings, one JSON object
# The build machine needs the CUDA 13.0 environment script (MASAM_CUDA_ENV, default
# ../shared/tools/cuda-env.sh); the GPU machine needs only the NVIDIA driver and the CUDA 13
# runtime libraries (cublas, curand, cudart, nvrtc).
# NCCL (the 1-rank data-parallel check): set MASAM_NCCL_LIB to a folder holding libnccl.so (e.g.
# the lib folder of the nvidia-nccl-cu13 wheel, with libnccl.so -> libnccl.so.2) to build with
# --features nccl; the binary then needs libnccl.so.2 on the GPU machine too (`run` looks for it
# and stops with a message if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  build)
    ENV_SCRIPT=${MASAM_CUDA_ENV:-../shared/tools/cuda-env.sh}
    eval "$(bash "$ENV_SCRIPT")"
    FEATURES=cuda
    if [ -n "${MASAM_NCCL_LIB:-}" ]; then
      [ -e "$MASAM_NCCL_LIB/libnccl.so" ] || { echo "no libnccl.so in MASAM_NCCL_LIB=$MASAM_NCCL_LIB" >&2; exit 2; }
      export LIBRARY_PATH="$MASAM_NCCL_LIB${LIBRARY_PATH:+:$LIBRARY_PATH}"
      FEATURES=cuda,nccl
    fi
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} \
      cargo build --release --features "$FEATURES" --example gpu_check
    mkdir -p .gpu
    cp "${CARGO_TARGET_DIR:-target/cuda}/release/examples/gpu_check" .gpu/gpu_check
    echo "$FEATURES" > .gpu/features
    ls -l .gpu/gpu_check
    ;;
  run)
    [ -x .gpu/gpu_check ] || { echo "no .gpu/gpu_check: run '$0 build' first and carry .gpu" >&2; exit 2; }
    L=""
    LIBS="libcublas.so.13 libnvrtc.so.13 libcurand.so.10 libcudart.so.13"
    if grep -q nccl .gpu/features 2>/dev/null; then LIBS="$LIBS libnccl.so.2"; fi
    for lib in $LIBS; do
      f=$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1 || true)
      if [ -n "$f" ]; then
        L="$L:$(dirname "$f")"
      elif [ "$lib" = libnccl.so.2 ]; then
        echo '{"ok": false, "error": "libnccl.so.2 not found on this machine: rebuild without MASAM_NCCL_LIB"}'
        exit 2
      fi
    done
    export LD_LIBRARY_PATH="${L#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi -L >&2 || true
    ./.gpu/gpu_check
    ;;
  *)
    echo "usage: $0 build|run" >&2; exit 2;;
esac
