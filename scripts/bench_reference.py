#!/usr/bin/env python3
"""The PyTorch half of the side-by-side comparison: the authors' MA-SAM code on the cases that
`cargo bench --bench side_by_side` runs (see benches/side_by_side.rs, whose doc lists the cases).

Usage:
    bench_reference.py CASE [--ref PATH] [--threads N]
    CASE: encoder | train_small | conv3d | volume
    PATH: a checkout of the authors' repository (github.com/cchen-cc/MA-SAM), the folder that
          holds MA-SAM/; default $MASAM_REFERENCE. Its code is imported, never copied here.

One case per process (peak memory is the process's ru_maxrss, like VmHWM on the Rust side).
Prints one JSON object: median_s, min_s, times_s, peak_rss_mib, details. Environment knobs as in
the Rust bench: MASAM_SBS_IMG, MASAM_SBS_WARMUP, MASAM_SBS_ITERS, MASAM_SBS_SLICES,
MASAM_SBS_STRIDE.

What runs, per case (the reference's code paths, weights random, float32 on CPU):
- encoder: Fact_tt_Sam(sam_vit_b at 512, 12 classes, pixel mean 0 / std 1, FacT rank 32), eval
  mode, torch.no_grad, one (1, 5, 3, 512, 512) window through net(x, True, 512) (the whole
  model: encoder with both 3D adapters per block, prompt encoder without prompt, mask decoder).
- train_small: the same construction with embed dim 192, depth 4, 4 heads, global blocks
  [1, 3], window 14, 256 px, 4 classes, FacT rank 8, and every block's two adapters rebuilt with
  64 channels (the reference hard-codes 384); train mode (FacT dropout 0.1 active), loss =
  0.2 CrossEntropy(ignore_index=-100) + 0.8 DiceLoss(classes + 1, softmax) on low_res_logits
  as in the reference trainer, backward, torch.optim.AdamW(lr 8e-4, wd 0.1) step, zero_grad.
  The reference trains with CUDA autocast float16; this is float32 on CPU like the Rust side.
- conv3d: scripts/bench_conv3d_torch.py's fwd_bwd (torch.nn.Conv3d 384 -> 384, kernel 3x1x1,
  'same', on 1x384x5x32x32, backward of sum(y * g)), run in this process.
- volume: the reference's test loop (test.py, test_single_volume) on a (slices, 512, 512)
  volume: a 5-slice window centred on every `stride`-th slice (and on the last one), edges
  replicated, softmax of the masks accumulated into a (slices + 4)-slice numpy probability
  array with counts, divided, arg-max. stride 1 is the reference; stride > 1 mirrors
  `masam predict --stride`.
"""
import argparse
import contextlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import resource
import runpy
import statistics
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class _Stub(types.ModuleType):
    """A module that is never used by the cases here (imported by the reference's utils.py for
    its evaluation helpers only): any attribute is another stub."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _Stub(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module):
        pass


def import_reference(ref):
    """Puts the reference's MA-SAM/ folder on sys.path and returns its modules."""
    code = os.path.join(ref, "MA-SAM")
    if not os.path.isdir(os.path.join(code, "segment_anything")):
        sys.exit(f"error: {code} is not the reference's code folder (no segment_anything/); "
                 "pass --ref or set MASAM_REFERENCE")
    sys.path.insert(0, code)
    missing = []
    for name in ["medpy", "SimpleITK", "nibabel", "imageio", "scipy", "tensorboardX", "tqdm"]:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        sys.meta_path.insert(0, _StubFinder(set(missing)))
    import segment_anything  # noqa: F401  (its __init__ shadows the build_sam submodule)
    build = sys.modules["segment_anything.build_sam"]
    import sam_fact_tt_image_encoder as fact
    import utils as ref_utils
    return build, fact, ref_utils


def build_net(build, fact, *, dim, depth, heads, global_idx, img, classes, rank, adapter=None):
    """The reference's model as train.py builds it (random weights, mean 0 / std 1)."""
    import torch
    sam, _ = build._build_sam(
        encoder_embed_dim=dim, encoder_depth=depth, encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx, num_classes=classes, image_size=img,
        pixel_mean=[0.0, 0.0, 0.0], pixel_std=[1.0, 1.0, 1.0])
    if adapter is not None and adapter != 384:
        for blk in sam.image_encoder.blocks:
            blk.adapter_channels = adapter
            for s in ["", "_2"]:
                setattr(blk, "adapter_linear_down" + s, torch.nn.Linear(dim, adapter, bias=False))
                setattr(blk, "adapter_linear_up" + s, torch.nn.Linear(adapter, dim, bias=False))
                setattr(blk, "adapter_conv" + s, torch.nn.Conv3d(
                    adapter, adapter, kernel_size=(3, 1, 1), padding="same"))
    return fact.Fact_tt_Sam(sam, rank, s=1.0)


def timed(warmup, iters, f):
    for _ in range(warmup):
        f()
    out = []
    for _ in range(max(iters, 1)):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return out


def case_encoder(ref):
    import torch
    build, fact, _ = import_reference(ref)
    img = env_int("MASAM_SBS_IMG", 512)
    net = build_net(build, fact, dim=768, depth=12, heads=12, global_idx=[2, 5, 8, 11], img=img,
                    classes=12, rank=32)
    net.eval()
    x = torch.rand(1, 5, 3, img, img)

    def forward():
        with torch.no_grad():
            out = net(x, True, img)
        del out

    times = timed(env_int("MASAM_SBS_WARMUP", 0), env_int("MASAM_SBS_ITERS", 1), forward)
    return times, {"backbone": "vit_b", "img": img, "slices": 5, "classes": 12, "fact_rank": 32,
                   "adapter_channels": 384, "model": "eval + torch.no_grad"}


def case_train_small(ref):
    import torch
    build, fact, ref_utils = import_reference(ref)
    img, classes = 256, 4
    net = build_net(build, fact, dim=192, depth=4, heads=4, global_idx=[1, 3], img=img,
                    classes=classes, rank=8, adapter=64)
    net.train()
    ce_loss = torch.nn.CrossEntropyLoss(ignore_index=-100)
    dice_loss = ref_utils.DiceLoss(classes + 1)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=8e-4,
                            betas=(0.9, 0.999), weight_decay=0.1)
    x = torch.rand(1, 5, 3, img, img)
    labels = torch.randint(0, classes + 1, (5, img, img))

    def step():
        out = net(x, True, img)
        logits = out["low_res_logits"]
        loss = 0.2 * ce_loss(logits, labels) + 0.8 * dice_loss(logits, labels, softmax=True)
        loss.backward()
        opt.step()
        opt.zero_grad()

    times = timed(env_int("MASAM_SBS_WARMUP", 2), env_int("MASAM_SBS_ITERS", 5), step)
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    return times, {"embed_dim": 192, "depth": 4, "heads": 4, "global": [1, 3], "window": 14,
                   "img": img, "slices": 5, "classes": classes, "fact_rank": 8,
                   "adapter_channels": 64, "trainable_parameters": trainable,
                   "loss": "0.2 CE + 0.8 Dice", "optimizer": "AdamW wd 0.1"}


def case_conv3d(_ref, threads):
    os.environ["TORCH_THREADS"] = str(threads)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_path(os.path.join(HERE, "bench_conv3d_torch.py"), run_name="__main__")
    res = json.loads(buf.getvalue().strip().splitlines()[-1])
    fb = res["fwd_bwd"]
    # the script reports only median and min (ms); both are carried over
    return [fb["median_ms"] / 1e3], {"shape": [1, 384, 5, 32, 32], "kernel": [3, 1, 1],
                                     "padding": "same", "bias": True,
                                     "backward": "sum(y * g), dense g", "runs": fb["runs"],
                                     "min_s": fb["min_ms"] / 1e3, "mkldnn": res["mkldnn"]}


def case_volume(ref):
    import numpy as np
    import torch
    build, fact, _ = import_reference(ref)
    img = env_int("MASAM_SBS_IMG", 512)
    n = env_int("MASAM_SBS_SLICES", 24)
    stride = max(env_int("MASAM_SBS_STRIDE", 1), 1)
    classes = 12
    net = build_net(build, fact, dim=768, depth=12, heads=12, global_idx=[2, 5, 8, 11], img=img,
                    classes=classes, rank=32)
    net.eval()
    volume = torch.rand(n, img, img)
    centres = list(range(0, n, stride))
    if centres[-1] != n - 1:
        centres.append(n - 1)

    def predict():
        prob = np.zeros((n + 4, img, img, classes + 1), dtype=np.float32)
        count = np.ones_like(prob)
        for c in centres:
            idx = [min(max(c + o, 0), n - 1) for o in range(-2, 3)]
            x = volume[idx].unsqueeze(1).repeat(1, 3, 1, 1).unsqueeze(0)  # (1, 5, 3, H, W)
            with torch.no_grad():
                masks = net(x, True, img)["masks"]
                p = torch.permute(torch.softmax(masks, dim=1), (0, 2, 3, 1)).numpy()
            prob[c:c + 5] += p
            count[c:c + 5] += 1.0
        labels = np.argmax(prob / count, axis=-1)[2:-2]
        return labels

    times = timed(0, 1, predict)
    return times, {"backbone": "vit_b", "img": img, "volume_slices": n, "stride": stride,
                   "windows": len(centres), "classes": classes}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", choices=["encoder", "train_small", "conv3d", "volume"])
    p.add_argument("--ref", default=os.environ.get("MASAM_REFERENCE"))
    p.add_argument("--threads", type=int, default=env_int("MASAM_SBS_THREADS", 2))
    a = p.parse_args()
    if a.case != "conv3d" and not a.ref:
        sys.exit("error: the reference repository path is needed: --ref PATH or MASAM_REFERENCE")
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    if a.case == "conv3d":
        times, details = case_conv3d(a.ref, a.threads)
    else:
        times, details = {"encoder": case_encoder, "train_small": case_train_small,
                          "volume": case_volume}[a.case](a.ref)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(json.dumps({
        "side": "pytorch", "case": a.case, "median_s": statistics.median(times),
        "min_s": details.pop("min_s", min(times)), "times_s": times, "peak_rss_mib": peak,
        "threads": a.threads, "torch": torch.__version__, "details": details,
    }))


if __name__ == "__main__":
    main()
