"""Fashion-MNIST end to end: trugrade.train("configs/fashion_mnist_cnn.yaml"), or with
--recipe resnet18 configs/fashion_mnist_resnet18.yaml, beside the same recipe in PyTorch
(bench/torch_fashion.py), each in its own fresh process: test accuracy (t10k,
best-validation epoch), seconds per training epoch (validation excluded) and peak RSS. The
run folder goes to a temporary directory, removed afterwards. --quick trains 1 epoch instead
of the config's own (cnn 3, resnet18 10). The cnn recipe takes several minutes on 2 cores;
the resnet18 recipe most of an hour per side."""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import print_table, run_torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"cnn": REPO / "configs" / "fashion_mnist_cnn.yaml",
           "resnet18": REPO / "configs" / "fashion_mnist_resnet18.yaml"}


def add_arguments(parser):
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", choices=sorted(CONFIGS), default="cnn",
                        help="cnn: the custom CNN for 3 epochs; resnet18: ResNet-18 at 28x28 for 10 epochs")
    parser.add_argument("--json", action="store_true", help="also print both results as one JSON line")


def _train_here(config, epochs, threads):
    import trugrade
    folder = tempfile.mkdtemp(prefix="trugrade_bench_fashion_")
    overrides = {"run.dir": folder}
    if epochs:
        overrides["train.epochs"] = epochs
    try:
        run = trugrade.train(config, overrides=overrides, progress=False, threads=threads)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = [row["epoch_seconds"] for row in run.metrics]
    return {"test_accuracy": run.test["accuracy"], "val_accuracy": [row.get("val_accuracy") for row in run.metrics],
            "epoch_seconds": seconds, "seconds_per_epoch": sum(seconds) / len(seconds),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _trugrade(config, epochs, threads):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "trugrade.bench.fashion", str(config), str(epochs), str(threads)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fashion bench: trugrade.train failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args):
    recipe = getattr(args, "recipe", "cnn")
    config = CONFIGS[recipe]
    if not config.exists():
        print(f"  fashion: no {config} (run from a source checkout); section skipped")
        return None
    from .. import config as configlib
    resolved = configlib.load(str(config))
    path = resolved.data.path
    if not os.path.isdir(path):
        print(f"  fashion: no dataset folder {path}; section skipped")
        return None
    epochs = 1 if args.quick else 0
    load = os.getloadavg()
    epochs_shown = epochs or resolved.train.epochs
    ours = _trugrade(config, epochs, args.threads)
    theirs = run_torch("torch_fashion.py", path, "--recipe", recipe, "--epochs", epochs_shown, threads=args.threads,
                       timeout=4 * 3600) or {}
    rows = []
    for label, key, fmt, better in (("test accuracy", "test_accuracy", "{:.4f}", "higher"),
                                    ("seconds per epoch", "seconds_per_epoch", "{:.1f}", "lower"),
                                    ("peak RSS MB", "peak_rss_mb", "{:.0f}", "lower")):
        a, b = ours.get(key), theirs.get(key)
        rows.append({"what": label, "tg": fmt.format(a), "torch": fmt.format(b) if b is not None else "-",
                     "ratio": f"{a / b:.2f}x" if a and b else "-", "better": better})
    print_table(f"fashion: configs/{config.name} ({epochs_shown} epoch{'' if epochs_shown == 1 else 's'}, {args.threads} threads) vs the "
                f"same recipe in PyTorch (load average before: {load[0]:.2f}, after: {os.getloadavg()[0]:.2f})", rows,
                [("what", "measure", "{}"), ("tg", "trugrade", "{}"), ("torch", "PyTorch", "{}"),
                 ("ratio", "trugrade / PyTorch", "{}"), ("better", "better is", "{}")])
    print(f"  epoch seconds: trugrade {', '.join(f'{s:.1f}' for s in ours['epoch_seconds'])}; PyTorch "
          f"{', '.join(f'{s:.1f}' for s in theirs.get('epoch_seconds', []))}")
    if args.json:
        print(json.dumps({"load_average": load[0], "trugrade": ours, "torch": theirs}))
    return ours, theirs


def _main():
    config, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(_train_here(config, epochs, threads)))


if __name__ == "__main__":
    _main()
