"""int8 post-training quantization on Fashion-MNIST: trains the fashion_mnist_cnn recipe
(configs/fashion_mnist_cnn.yaml; --epochs, default 1, or --checkpoint to reuse a trained
run), quantizes it with trugrade.quantize (calibration: --calib-limit training images),
then reports the t10k test accuracy of float32 and int8 and the speed of trugrade's own
inference path (model.forward) in float32 and int8 at batch 128 and batch 1, timed
alternately in the same process. Also the onnxruntime accuracy of the QDQ export
(bench/ort_int8.py, when onnxruntime is installed). No PyTorch side: this compares trugrade with itself."""
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .common import best_time, print_table, run_torch

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "fashion_mnist_cnn.yaml"


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of the recipe (default 1)")
    parser.add_argument("--checkpoint", help="a trained fashioncnn run folder or checkpoint instead of training")
    parser.add_argument("--calib-limit", type=int, default=512, help="calibration images (default 512)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON line")


def _accuracy(model, images, labels, batch_size=256):
    predicted = [model.predict(images[s:s + batch_size]).argmax(1) for s in range(0, len(images), batch_size)]
    return float((np.concatenate(predicted) == labels).mean())


def measure(model, data_path, calib_limit=512, quick=False, onnx_dir=None):
    """{fp32/int8 accuracy, ms per batch and speed-ups} of a LoadedModel of fashioncnn."""
    import trugrade
    from trugrade.train import _find_idx
    images = np.asarray(trugrade.read_idx(_find_idx(data_path, "t10k-images-idx3-ubyte")))
    labels = np.asarray(trugrade.read_idx(_find_idx(data_path, "t10k-labels-idx1-ubyte")))
    if quick:
        images, labels = images[:2000], labels[:2000]
    quantized = trugrade.quantize(model, data_path, limit=calib_limit)
    result = {"test_images": len(images), "calibration_images": calib_limit,
              "fp32_accuracy": _accuracy(model, images, labels), "int8_accuracy": _accuracy(quantized, images, labels),
              "int8_layers": quantized.model.quantized_layers}
    result["accuracy_drop_points"] = 100 * (result["fp32_accuracy"] - result["int8_accuracy"])
    x = model._prepare(images[:128])
    for batch in (128, 1):
        xb = np.ascontiguousarray(x[:batch])
        fp32, int8 = [], []
        for _ in range(3 if quick else 5):   # alternate, keep the best of each
            fp32.append(best_time(lambda: model.model.forward(xb), repeat=3, min_time=0.3))
            int8.append(best_time(lambda: quantized.model.forward(xb), repeat=3, min_time=0.3))
        result[f"fp32_ms_batch{batch}"] = 1000 * min(fp32)
        result[f"int8_ms_batch{batch}"] = 1000 * min(int8)
        result[f"speedup_batch{batch}"] = min(fp32) / min(int8)
    if onnx_dir is not None:   # onnxruntime runs in bench/ort_int8.py: a reference, never imported here
        path = os.path.join(onnx_dir, "fashioncnn-int8.onnx")
        trugrade.export_onnx(quantized, path)
        np.save(os.path.join(onnx_dir, "images.npy"), model._prepare(images))
        np.save(os.path.join(onnx_dir, "labels.npy"), np.asarray(labels, np.int64))
        result.update(run_torch("ort_int8.py", path, os.path.join(onnx_dir, "images.npy"),
                                os.path.join(onnx_dir, "labels.npy")) or {})
    return result


def run(args):
    import trugrade
    if not CONFIG.exists():
        print(f"  int8: no {CONFIG} (run from a source checkout); section skipped")
        return None
    from .. import config as configlib
    data_path = configlib.load(str(CONFIG)).data.path
    if not os.path.isdir(data_path):
        print(f"  int8: no dataset folder {data_path}; section skipped")
        return None
    trugrade.set_num_threads(args.threads)
    folder = tempfile.mkdtemp(prefix="trugrade_bench_int8_")
    try:
        if args.checkpoint:
            checkpoint, epochs = args.checkpoint, "given"
        else:
            epochs = args.epochs
            run_ = trugrade.train(str(CONFIG), overrides={"run.dir": folder, "train.epochs": epochs}, progress=False,
                                  threads=args.threads)
            checkpoint = run_.best_checkpoint
        model = trugrade.load_model(checkpoint)
        result = measure(model, data_path, calib_limit=args.calib_limit, quick=args.quick, onnx_dir=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["epochs"] = epochs
    result["qgemm_kernel"] = trugrade._C.qgemm_kernel_name()
    print_table(f"int8 post-training quantization, fashioncnn on Fashion-MNIST t10k ({result['test_images']} images, "
                f"{epochs} training epochs, {result['int8_layers']} int8 layers, kernel {result['qgemm_kernel']}, "
                f"{args.threads} threads)",
                [{"what": "test accuracy", "fp32": 100 * result["fp32_accuracy"], "int8": 100 * result["int8_accuracy"],
                  "ratio": result["accuracy_drop_points"]},
                 {"what": "ms / batch of 128", "fp32": result["fp32_ms_batch128"], "int8": result["int8_ms_batch128"],
                  "ratio": result["speedup_batch128"]},
                 {"what": "ms / batch of 1", "fp32": result["fp32_ms_batch1"], "int8": result["int8_ms_batch1"],
                  "ratio": result["speedup_batch1"]}],
                [("what", "", "{}"), ("fp32", "float32", "{:.3f}"), ("int8", "int8", "{:.3f}"),
                 ("ratio", "drop (points) / speed-up (x)", "{:.2f}")])
    if "onnxruntime_int8_accuracy" in result:
        print(f"  onnxruntime on the QDQ export: test accuracy {100 * result['onnxruntime_int8_accuracy']:.2f}%")
    if args.json:
        import json
        print(json.dumps(result))
    return result
