#!/usr/bin/env python3
"""Time PyTorch's Conv3d forward + backward on the MA-SAM adapter shape, to compare with
`cargo bench --bench conv3d` (which runs this script itself when torch is importable).

Shape 1 x 384 x 5 x 32 x 32, kernel (3, 1, 1), padding 'same', bias, f32, CPU, threads = all
cores (2 on the build machine). Backward of (y * gy).sum() through autograd (`fwd_bwd`, as the Rust bench's `fwd_bwd`) and
`y.backward(gy)` (`fwd_bwd_grad_y`, as the Rust bench's `fwd_bwd_direct_grad_y`). Prints one JSON
object. Install torch with `pip install torch` (PyPI) if the CPU index is unreachable.
"""
import json
import os
import statistics
import time

import torch

torch.manual_seed(0)
threads = int(os.environ.get("TORCH_THREADS", os.cpu_count() or 1))
torch.set_num_threads(threads)
shape = (1, 384, 5, 32, 32)
conv = torch.nn.Conv3d(384, 384, kernel_size=(3, 1, 1), padding="same")
x = torch.randn(shape, requires_grad=True)
gy = torch.randn(shape)


def fwd():
    with torch.no_grad():
        conv(x)


def fwd_bwd():
    conv.zero_grad(set_to_none=True)
    x.grad = None
    (conv(x) * gy).sum().backward()


def fwd_bwd_grad_y():
    conv.zero_grad(set_to_none=True)
    x.grad = None
    conv(x).backward(gy)


def timed(f, warmup, iters):
    for _ in range(warmup):
        f()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        f()
        out.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(out), "min_ms": min(out), "runs": iters}


print(json.dumps({
    "torch": torch.__version__,
    "threads": threads,
    "mkldnn": torch.backends.mkldnn.is_available(),
    "forward": timed(fwd, 2, 10),
    "fwd_bwd": timed(fwd_bwd, 2, 10),
    "fwd_bwd_grad_y": timed(fwd_bwd_grad_y, 2, 10),
}))
