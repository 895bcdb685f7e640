"""`make demo`: trugrade's main job on real data. Trains the custom CNN on Fashion-MNIST
(configs/fashion_mnist_cnn.yaml: 3 epochs) with the progress bar, evaluates it on the
test set and writes report.html. `python -m trugrade.demo --set train.epochs=1` for less."""
import argparse
import os
import sys
from pathlib import Path

import trugrade

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "fashion_mnist_cnn.yaml"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m trugrade.demo")
    parser.add_argument("--config", default=str(CONFIG), help="config to train (default: the Fashion-MNIST CNN)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    if not os.path.exists(args.config):
        sys.exit(f"demo: {args.config} not found; run from a source checkout of trugrade")
    print(f"trugrade {trugrade.__version__}: {len(trugrade.ops.names())} ops, "
          f"{len(trugrade.models.architectures())} architectures, {trugrade.get_num_threads()} threads")
    run = trugrade.train(args.config, overrides=args.set)
    print(f"\nrun {run.dir}: {run.status}")
    for row in run.metrics:
        print(f"  epoch {row['epoch'] + 1}: train loss {row['train_loss']:.4f}, val accuracy "
              f"{row.get('val_accuracy', float('nan')):.4f}, {row['epoch_seconds']:.1f} s "
              f"({row['images_per_second']:.0f} img/s)")
    if run.test:
        print(f"test accuracy {run.test['accuracy']:.4f} (macro F1 {run.test['macro']['f1']:.4f}); "
              f"report: {run.report_path}")


if __name__ == "__main__":
    main()
