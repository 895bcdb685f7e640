"""Batch inference speed of a segmentation model on tiles, per tile: `trugrade predict`'s own
path (trugrade.predict.predict_tiles: read the .npy tile, normalise, forward one tile,
softmax, mask, write the mask PNG and the probability .npy) and the model alone on a batch
of tiles (predict_masks), beside the same U-Net in PyTorch (bench/torch_predict.py: eval
mode, torch.inference_mode, channels_last, the same reading, softmax and writing).

  python -m trugrade.bench predict                          # U-Net-SE, 11 bands, 2 classes, 256x256
  python -m trugrade.bench predict --arch unet --tiles 4 --predict-batch 4 --json

The checkpoint is a freshly initialised model saved as trugrade.train saves one (weights
do not change the speed); the tiles are synthetic debris tiles (trugrade.synthetic; random
normal values for other band counts) saved as float32 .npy. Both sides load the same
weights, and the largest difference of their probability maps is reported as a check. Each side runs in its own process; per-tile times are medians over the
tiles after one warm-up tile. What this does not measure: models whose tiles need resizing
(sides not multiples of 32), and PNG/JPEG decoding (the tiles are .npy)."""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import print_table, run_torch


def add_arguments(parser):
    parser.add_argument("--arch", default="unet_se", help="segmentation architecture: unet or unet_se")
    parser.add_argument("--in-channels", type=int, default=11)
    parser.add_argument("--size", type=int, default=256, help="square tile side (a multiple of 32)")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--tiles", type=int, default=None, help="tiles timed one by one (default 4; --quick 2)")
    parser.add_argument("--predict-batch", type=int, default=4, help="tiles per forward in the batched measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")


def write_inputs(folder, arch, in_channels, size, classes, tiles):
    """A checkpoint of a freshly initialised `arch` (segmentation metadata as trugrade.train
    writes it) and `tiles` synthetic float32 tiles under `folder`; returns (checkpoint, tile paths)."""
    import numpy as np

    from .. import models, safetensors
    from ..synthetic import BANDS, synthetic_debris_tile
    model = models.create(arch, num_classes=classes, in_channels=in_channels, input_size=size, seed=0)
    checkpoint = os.path.join(folder, "model.safetensors")
    names = ["background", "debris"] if classes == 2 else [str(c) for c in range(classes)]
    safetensors.save(checkpoint, model.state_dict(), {
        "arch": arch, "num_classes": str(classes), "in_channels": str(in_channels), "input_size": str(size),
        "classes": json.dumps(names), "task": "segmentation",
        "normalization": json.dumps({"mean": [0.0] * in_channels, "std": [1.0] * in_channels})})
    rng = np.random.default_rng(0)
    paths = []
    for i in range(tiles + 1):  # one warm-up tile first
        image = synthetic_debris_tile(rng, size=size)[0] if in_channels == BANDS else \
            rng.standard_normal((in_channels, size, size))
        paths.append(os.path.join(folder, f"tile{i:03d}.npy"))
        np.save(paths[-1], image.astype(np.float32))
    return checkpoint, paths


def _measure_here(checkpoint, paths, predict_batch, threads, out_dir):
    import numpy as np

    from .. import _C
    from ..predict import load_model, predict_tiles
    _C.set_num_threads(threads)
    model = load_model(checkpoint)
    predict_tiles(model, paths[:1], out_dir)  # warm-up
    started = time.perf_counter()
    results = predict_tiles(model, paths[1:], out_dir)
    wall = time.perf_counter() - started
    per_tile = [r["seconds"] for r in results]
    tiles = np.stack([np.load(p) for p in paths[1:predict_batch + 1]])
    model.predict_masks(tiles[:1], batch_size=predict_batch)
    started = time.perf_counter()
    model.predict_masks(tiles, batch_size=predict_batch)
    batched = (time.perf_counter() - started) / len(tiles)
    return {"side": "trugrade", "tiles": len(per_tile), "tile_seconds": float(np.median(per_tile)),
            "tile_seconds_with_io": wall / len(per_tile),
            "batch": len(tiles), "batched_tile_seconds": batched,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _max_difference(folder, paths):
    """Largest |trugrade - PyTorch| over the probability maps both sides wrote."""
    import numpy as np
    worst = 0.0
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        ours, theirs = (np.load(os.path.join(folder, side, f"{stem}_prob.npy")) for side in ("out-trugrade", "out-torch"))
        worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst


def _rate(seconds):
    return f"{seconds * 1000:.0f} ms ({1 / seconds:.2f}/s)" if seconds else "-"


def _ratio(ours, theirs):
    """speed ratio trugrade / PyTorch from seconds per tile (higher is better for trugrade)."""
    return f"{theirs / ours:.2f}x" if ours and theirs else "-"


def run(args):
    tiles = args.tiles or (2 if args.quick else 4)
    if args.size % 32:
        raise SystemExit(f"predict bench: --size must be a multiple of 32 (tiles run at their own size), got {args.size}")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="trugrade-bench-predict-") as folder:
        checkpoint, paths = write_inputs(folder, args.arch, args.in_channels, args.size, args.classes, tiles)
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.run([sys.executable, "-m", "trugrade.bench.predict", checkpoint, str(args.predict_batch),
                               str(args.threads), os.path.join(folder, "out-trugrade"), *paths],
                              env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"predict bench of {args.arch} failed:\n{proc.stderr.strip()[-2000:]}")
        ours = json.loads(proc.stdout.strip().splitlines()[-1])
        theirs = run_torch("torch_predict.py", checkpoint, args.arch, args.in_channels, args.classes, args.predict_batch,
                           os.path.join(folder, "out-torch"), *paths, threads=args.threads)
        if theirs:
            theirs["max_prob_difference"] = _max_difference(folder, paths)
    theirs = theirs or {}
    rows = [{"what": what, "tg": _rate(ours.get(key)), "torch": _rate(theirs.get(key)),
             "ratio": _ratio(ours.get(key), theirs.get(key))}
            for what, key in ((f"predict_tiles, 1 tile per forward ({tiles} tiles)", "tile_seconds"),
                              ("  the same with reading and writing", "tile_seconds_with_io"),
                              (f"forward batch {ours['batch']}, per tile", "batched_tile_seconds"))]
    rows.append({"what": "peak RSS MB", "tg": f"{ours['peak_rss_mb']:.0f}",
                 "torch": f"{theirs['peak_rss_mb']:.0f}" if theirs else "-",
                 "ratio": f"{ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}x" if theirs else "-"})
    print_table(f"predict: {args.arch} {args.in_channels}x{args.size}x{args.size} tiles -> {args.classes} classes, "
                f"{args.threads} threads, seconds per tile (medians); ratio = speed trugrade / PyTorch (higher is "
                f"better for trugrade; RSS ratio: lower is) (load average before: {load[0]:.2f}, after: "
                f"{os.getloadavg()[0]:.2f})", rows,
                [("what", "measurement", "{}"), ("tg", "trugrade", "{}"), ("torch", "PyTorch", "{}"),
                 ("ratio", "ratio", "{}")])
    if theirs:
        print(f"  check: both sides load the same weights; largest probability difference "
              f"{theirs['max_prob_difference']:.2e}")
    result = {"arch": args.arch, "in_channels": args.in_channels, "size": args.size, "classes": args.classes,
              "threads": args.threads, "load_average": load[0], "trugrade": ours, "torch": theirs or None}
    if args.json:
        print(json.dumps(result))
    return result


def _main():
    checkpoint, predict_batch, threads, out_dir, *paths = sys.argv[1:]
    print(json.dumps(_measure_here(checkpoint, paths, int(predict_batch), int(threads), out_dir)))


if __name__ == "__main__":
    _main()
