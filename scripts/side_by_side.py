#!/usr/bin/env python3
"""masam against the authors' PyTorch code, side by side, on the same machine in one sitting.

For every case, runs the Rust side (`benches/side_by_side.rs`, built once with
`cargo bench --bench side_by_side --no-run`, then its executable run directly) and the Python
side (`scripts/bench_reference.py`) alternately, A/B/A/B, each run a fresh process, with the same
thread count on both sides (RAYON_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS, torch threads).
Takes the median over the repetitions of each side's per-process median time and the median
peak resident memory, and writes one JSON file and one markdown table.

Usage (from the repository root):
    python3 scripts/side_by_side.py --python /path/to/venv/bin/python --ref /path/to/MA-SAM-repo \
        [--cases conv3d,train_small,encoder,volume1,volume5] [--reps 5] [--slow-reps 2] \
        [--threads 2] [--out target/side_by_side]

`--python` is an interpreter with torch (and numpy) installed; `--ref` the authors' repository
(the folder holding MA-SAM/). The 512 x 512 cases (encoder, volume1, volume5) take `--slow-reps`
repetitions. The driver only reads the JSON each side prints; it asserts nothing about times.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# case name -> (Rust/Python case, extra environment, slow?)
CASES = {
    "conv3d": ("conv3d", {}, False),
    "train_small": ("train_small", {}, False),
    "encoder": ("encoder", {}, True),
    "volume1": ("volume", {"MASAM_SBS_STRIDE": "1"}, True),
    "volume5": ("volume", {"MASAM_SBS_STRIDE": "5"}, True),
}

DESCRIPTION = {
    "conv3d": "adapter Conv3d fwd+bwd, 384 ch, 5x32x32, k 3x1x1, dense output gradient",
    "train_small": "train step, C 192, 4 blocks, 4 heads, global 1/3, 256^2, 5 slices, "
                   "4 classes, FacT r 8, adapter 64",
    "encoder": "whole model, ViT-B, 512^2, 5 slices, eval, no graph / no_grad",
    "volume1": "volume 512^2 x 24 slices, ViT-B, stride 1 (24 windows)",
    "volume5": "volume 512^2 x 24 slices, ViT-B, stride 5 (6 windows)",
}


def build_rust():
    """Builds the bench and returns its executable's path."""
    out = subprocess.run(
        ["cargo", "bench", "--bench", "side_by_side", "--no-run", "--message-format=json"],
        cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True)
    exe = None
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == \
                "side_by_side" and msg.get("executable"):
            exe = msg["executable"]
    if exe is None:
        sys.exit("error: cargo built no side_by_side executable")
    return exe


def run_one(cmd, env, timeout):
    """Runs one process; returns its last JSON line, or an error record."""
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return {"error": f"exit {p.returncode}: {p.stderr.strip()[-500:]}"}


def summarise(runs):
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"runs": len(runs), "ok": 0, "errors": [r["error"] for r in runs]}
    return {
        "runs": len(runs), "ok": len(ok),
        "median_s": statistics.median(r["median_s"] for r in ok),
        "per_run_median_s": [r["median_s"] for r in ok],
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] or 0.0 for r in ok),
        "details": ok[0].get("details"),
        "errors": [r["error"] for r in runs if "error" in r],
    }


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        model = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")]
        flags = [l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags")]
        info["cpu"] = model[0] if model else None
        info["avx512f"] = bool(flags) and "avx512f" in flags[0]
        info["avx2"] = bool(flags) and "avx2" in flags[0]
        info["load_avg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def table(results, threads):
    rows = ["| case | masam median s | PyTorch median s | time masam/PyTorch | masam peak RSS MiB "
            "| PyTorch peak RSS MiB | RSS masam/PyTorch | reps (masam/PyTorch) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        a, b = r["masam"], r["pytorch"]
        if "median_s" not in a or "median_s" not in b:
            rows.append(f"| {DESCRIPTION[name]} | {a.get('median_s', 'error')} | "
                        f"{b.get('median_s', 'error')} | - | - | - | - | "
                        f"{a['ok']}/{b['ok']} |")
            continue
        rows.append(
            f"| {DESCRIPTION[name]} | {a['median_s']:.3f} | {b['median_s']:.3f} | "
            f"{a['median_s'] / b['median_s']:.2f} | {a['peak_rss_mib']:.0f} | "
            f"{b['peak_rss_mib']:.0f} | {a['peak_rss_mib'] / b['peak_rss_mib']:.2f} | "
            f"{a['ok']}/{b['ok']} |")
    return "\n".join(rows) + f"\n\n{threads} threads each side; medians of fresh processes.\n"


def write(out, started, mach, threads, results):
    """Writes side_by_side.json and side_by_side.md under `out`; returns the markdown."""
    mach["load_avg_now"] = os.getloadavg()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True).stdout.strip()
    report = {"started": started, "commit": git, "threads": threads, "machine": mach,
              "cases": results}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "side_by_side.json"), "w") as f:
        json.dump(report, f, indent=1)
    md = table(results, threads)
    md += (f"\nMachine: {mach.get('cpu')}, {mach.get('cpus')} logical CPUs, "
           f"AVX-512 {'yes' if mach.get('avx512f') else 'no'}; load average at start "
           f"{mach.get('load_avg_at_start')}, at the last case's end {mach['load_avg_now']}; "
           f"commit {git}; started {started}.\n")
    with open(os.path.join(out, "side_by_side.md"), "w") as f:
        f.write(md)
    return md


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--python", default=os.environ.get("MASAM_TORCH_PYTHON", "python3"))
    p.add_argument("--ref", default=os.environ.get("MASAM_REFERENCE"))
    p.add_argument("--cases", default="conv3d,train_small,encoder,volume5")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--slow-reps", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=int, default=3600, help="per process, seconds")
    p.add_argument("--out", default=os.path.join(ROOT, "target", "side_by_side"))
    a = p.parse_args()
    if not a.ref:
        sys.exit("error: --ref (or MASAM_REFERENCE): the authors' MA-SAM repository")
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            sys.exit(f"error: unknown case {c}; known: {', '.join(CASES)}")
    exe = build_rust()
    t = str(a.threads)
    base = dict(os.environ, RAYON_NUM_THREADS=t, OMP_NUM_THREADS=t, MKL_NUM_THREADS=t,
                CANDLE_NUM_THREADS=t, MASAM_SBS_THREADS=t, MASAM_REFERENCE=a.ref)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    results = {}
    md = ""
    for name in cases:
        case, extra, slow = CASES[name]
        reps = a.slow_reps if slow else a.reps
        env = dict(base, MASAM_SBS_CASE=case, **extra)
        if case == "conv3d":
            # bench_conv3d_torch.py has a fixed protocol (2 warm-up runs, median of 10): so has
            # the Rust side, whatever the knobs say for the other cases
            env.pop("MASAM_SBS_WARMUP", None)
            env.pop("MASAM_SBS_ITERS", None)
        runs = {"masam": [], "pytorch": []}
        for i in range(reps):
            # A/B, then B/A on the next repetition, so that drifts in load hit both sides alike
            order = ["masam", "pytorch"] if i % 2 == 0 else ["pytorch", "masam"]
            for side in order:
                cmd = [exe] if side == "masam" else \
                    [a.python, os.path.join(ROOT, "scripts", "bench_reference.py"), case]
                r = run_one(cmd, env, a.timeout)
                runs[side].append(r)
                print(json.dumps({"case": name, "rep": i, "side": side,
                                  "median_s": r.get("median_s"),
                                  "peak_rss_mib": r.get("peak_rss_mib"),
                                  "error": r.get("error")}), file=sys.stderr, flush=True)
        results[name] = {"masam": summarise(runs["masam"]), "pytorch": summarise(runs["pytorch"]),
                         "raw": runs}
        # written after every case, so that an interrupted sitting keeps what it measured
        md = write(a.out, started, mach, a.threads, results)
    print(json.dumps({k: {s: {m: v[s].get(m) for m in ("median_s", "peak_rss_mib", "ok")}
                          for s in ("masam", "pytorch")} for k, v in results.items()}))
    print(md)


if __name__ == "__main__":
    main()
