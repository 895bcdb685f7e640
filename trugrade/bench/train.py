"""Training speed: full training steps (forward, cross-entropy, backward, SGD momentum 0.9)
of a zoo architecture on synthetic in-memory data, run by the C trainer (_C.Trainer over
batch * steps random float32 images; one run_epoch call does every step, no Python per
step), beside the same measurement in PyTorch (bench/torch_train.py).

  python -m trugrade.bench train --arch resnet18 --in-channels 3 --size 224 --batch 16 --steps 5 --json
  python -m trugrade.bench train --compare      # the standard set, side by side, as ratios
  python -m trugrade.bench train --arch unet_se --in-channels 11 --size 256 --batch 4 --classes 2 --compare
                                                 # one configuration, side by side

Segmentation architectures (unet, unet_se, deeplabv3plus, fpn) train on random per-pixel
masks (N, SIZE, SIZE) with the per-pixel cross-entropy; images/s is then tiles/s.

Each measurement is its own fresh process, so its peak RSS (ru_maxrss) is its own: the
interpreter, numpy, the engine, the data, the model, its planned activations and the
optimizer state. The first step (batch 0 through a one-step trainer: planning, allocation,
first touch of memory) is timed apart from the epoch that gives images/s.
--bf16 trains with bfloat16 mixed precision (the Trainer's bf16: conv/linear operands rounded
to bfloat16, float32 accumulation, float32 master weights), beside PyTorch's bfloat16 autocast.
What this does not measure: data loading and augmentation (the data section does)."""
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from .common import print_table, run_torch

# (arch, in_channels, size, batch, steps): the compare set; the 224 models take few steps
STANDARD = [
    ("smallcnn", 1, 28, 128, 20),
    ("resnet18", 3, 32, 128, 3),
    ("resnet18", 3, 224, 16, 4),
    ("efficientnet_b0", 3, 224, 8, 4),
]
# (arch, in_channels, size, batch, steps) with 2 classes: the segmentation rows of the compare set
# (U-Net-SE on 11-band 256x256 tiles); no bf16 row (emulated bf16 on this CPU: minutes per step)
SEGMENTATION_STANDARD = [
    ("unet_se", 11, 256, 4, 2),
]
SEGMENTATION = ("unet", "unet_se", "deeplabv3plus", "fpn")


def add_arguments(parser):
    parser.add_argument("--arch", default=None,
                        help="zoo architecture (trugrade.models.architectures()); default resnet18, or with "
                             "--compare the standard set")
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=224, help="square input size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps (default 5; with --compare each row's own)")
    parser.add_argument("--classes", type=int, default=None,
                        help="classes (default 10; 2 for the segmentation rows of the standard set)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (train.bf16)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.add_argument("--compare", action="store_true",
                        help="beside PyTorch: the standard set (fp32, and PyTorch's bf16 autocast for the "
                             "classifiers), or the one configuration --arch names (fp32)")


def measure(arch, in_channels, size, batch, steps, classes=10, threads=2, bf16=False):
    """Runs one measurement in a fresh process; returns its dict (see _measure_here)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "trugrade.bench.train", arch, str(in_channels), str(size),
                           str(batch), str(steps), str(classes), str(threads), "1" if bf16 else "0"],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train bench of {arch} {in_channels}x{size}x{size} batch {batch} failed:\n"
                           f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure_here(arch, in_channels, size, batch, steps, classes, threads, bf16=False):
    import numpy as np

    from .. import _C, models
    _C.set_num_threads(threads)
    rng = np.random.default_rng(0)
    n = batch * steps
    images = rng.standard_normal((n, in_channels, size, size), dtype=np.float32)  # [N, C, S, S]
    segmentation = arch in SEGMENTATION
    labels = rng.integers(0, classes, (n, size, size) if segmentation else n, dtype=np.int64)  # [N] or [N, S, S]
    model = models.create(arch, num_classes=classes, in_channels=in_channels, input_size=size, seed=0)
    options = dict(epochs=1, batch_size=batch, lr=0.01, optimizer="sgd", momentum=0.9, shuffle=False, seed=0,
                   bf16=bool(bf16))
    start = time.perf_counter()
    first = _C.Trainer(model._c, images[:batch], labels[:batch], **options)
    first.run_epoch(catch_sigint=False)
    first_step = time.perf_counter() - start
    del first
    trainer = _C.Trainer(model._c, images, labels, **options)
    start = time.perf_counter()
    loss = trainer.run_epoch(catch_sigint=False)
    elapsed = time.perf_counter() - start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    planned = model.memory(batch=batch)  # after the peak is read: asking may replan
    return {"arch": arch, "in_channels": in_channels, "size": size, "batch": batch, "steps": steps,
            "bf16": bool(bf16), "threads": threads, "images_per_second": n / elapsed, "step_seconds": elapsed / steps,
            "first_step_seconds": first_step, "loss": float(loss),
            "planned_mb": (planned["arena_bytes"] + planned["persistent_bytes"]) / 2**20, "peak_rss_mb": peak_rss_mb}


def _torch(arch, in_channels, size, batch, steps, classes, threads, bf16):
    args = [arch, in_channels, size, batch, steps, "--classes", classes] + (["--bf16"] if bf16 else [])
    return run_torch("torch_train.py", *args, threads=threads)


def _rate(value):
    return f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def compare_set(args):
    """[(arch, in_channels, size, batch, steps, classes, with_bf16)] that --compare runs."""
    if args.arch:
        return [(args.arch, args.in_channels, args.size, args.batch, args.steps or 3, args.classes or 10, False)]
    rows = [(*row, args.classes or 10, True) for row in STANDARD]
    rows += [(*row, args.classes or 2, False) for row in SEGMENTATION_STANDARD]
    return rows


def compare(args):
    load = os.getloadavg()
    rows, results = [], []
    for arch, channels, size, batch, steps, classes, with_bf16 in compare_set(args):
        steps = args.steps or (max(2, steps // 2) if args.quick else steps)
        shape = f"{channels}x{size}x{size}"
        tg = measure(arch, channels, size, batch, steps, classes, args.threads)
        ref = _torch(arch, channels, size, batch, steps, classes, args.threads, False)
        tg16 = measure(arch, channels, size, batch, steps, classes, args.threads, bf16=True) if with_bf16 else None
        ref16 = _torch(arch, channels, size, batch, steps, classes, args.threads, True) if with_bf16 else None
        results.append({"arch": arch, "input": shape, "batch": batch, "steps": steps, "classes": classes,
                        "trugrade": tg, "torch": ref, "trugrade_bf16": tg16, "torch_bf16": ref16})
        for label, ours, theirs in (("fp32", tg, ref), ("bf16", tg16, ref16)):
            if label == "bf16" and not with_bf16:
                continue
            theirs = theirs or {}
            rows.append({
                "model": arch, "input": shape, "batch": str(batch), "steps": str(steps), "precision": label,
                "tg_rate": _rate(ours['images_per_second']) if ours else "unsupported",
                "torch_rate": _rate(theirs['images_per_second']) if theirs else "-",
                "rate_ratio": _ratio(ours and ours["images_per_second"], theirs.get("images_per_second")),
                "tg_first": f"{ours['first_step_seconds']:.2f}" if ours else "-",
                "torch_first": f"{theirs['first_step_seconds']:.2f}" if theirs else "-",
                "tg_rss": f"{ours['peak_rss_mb']:.0f}" if ours else "-",
                "torch_rss": f"{theirs['peak_rss_mb']:.0f}" if theirs else "-",
                "rss_ratio": _ratio(ours and ours["peak_rss_mb"], theirs.get("peak_rss_mb")),
            })
    print_table(f"train: full steps (forward, loss, backward, SGD momentum 0.9) on synthetic data, "
                f"{args.threads} threads; ratios trugrade / PyTorch (images/s: higher is better for trugrade; "
                f"RSS: lower is) (load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f})", rows,
                [("model", "model", "{}"), ("input", "input", "{}"), ("batch", "batch", "{}"),
                 ("steps", "steps", "{}"), ("precision", "precision", "{}"),
                 ("tg_rate", "trugrade img/s", "{}"), ("torch_rate", "PyTorch img/s", "{}"),
                 ("rate_ratio", "img/s ratio", "{}"), ("tg_first", "tg 1st step s", "{}"),
                 ("torch_first", "torch 1st step s", "{}"), ("tg_rss", "tg peak RSS MB", "{}"),
                 ("torch_rss", "torch peak RSS MB", "{}"), ("rss_ratio", "RSS ratio", "{}")])
    if any(row["precision"] == "bf16" for row in rows):
        print("  bf16: trugrade rounds conv/linear operands to bfloat16 and accumulates in float32 (float32 kernels, "
              "float32 activations); PyTorch uses torch.autocast('cpu', bfloat16)"
              + ("" if _native_bf16() else " on a CPU without native bf16 (no avx512_bf16 or AMX: emulated)"))
    if args.json:
        print(json.dumps({"load_average": load[0], "rows": results}))
    return results


def _native_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run(args):
    if args.compare:
        return compare(args)
    steps = args.steps or 5
    load = os.getloadavg()[0]
    result = measure(args.arch or "resnet18", args.in_channels, args.size, args.batch, steps, args.classes or 10,
                     args.threads, bf16=args.bf16)
    result["load_average"] = load
    if args.json:
        print(json.dumps(result))
    else:
        print(f"train {result['arch']} {args.in_channels}x{args.size}x{args.size} batch {args.batch}, {steps} steps, "
              f"{'bf16' if args.bf16 else 'fp32'}, "
              f"{args.threads} threads: {result['images_per_second']:.1f} images/s "
              f"({result['step_seconds']:.3f} s/step), first step {result['first_step_seconds']:.2f} s, "
              f"peak RSS {result['peak_rss_mb']:.0f} MB (planned step memory {result['planned_mb']:.0f} MB; "
              f"load average {load:.2f})")
    return result


def _main():
    arch, in_channels, size, batch, steps, classes, threads = sys.argv[1:8]
    bf16 = len(sys.argv) > 8 and sys.argv[8] == "1"
    print(json.dumps(_measure_here(arch, int(in_channels), int(size), int(batch), int(steps), int(classes),
                                   int(threads), bf16)))


if __name__ == "__main__":
    _main()
