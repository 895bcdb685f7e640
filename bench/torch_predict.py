"""PyTorch twin of trugrade/bench/predict.py: batch inference of a segmentation U-Net on
.npy tiles, per tile, PyTorch at its best on this machine (torch.set_num_threads from
TRUGRADE_BENCH_THREADS (2), channels_last model and inputs, torch.inference_mode, eval mode,
OPENBLAS settings from trugrade.bench.common.run_torch's environment).

  torch_predict.py CHECKPOINT ARCH IN_CHANNELS CLASSES PREDICT_BATCH OUT_DIR TILE.npy...

The weights are trugrade's checkpoint (read here with numpy; same parameter names, the
U-Net of tests/torch_seg_models.py), so both sides predict the same masks. Per tile, as
trugrade.predict.predict_tiles does: np.load, normalise by the checkpoint's mean and std,
forward one tile, softmax, argmax (timed: tile_seconds), then the mask PNG (Pillow) and the
foreground probability .npy are written (with the rest: tile_seconds_with_io). The first
tile is a warm-up. Then the first PREDICT_BATCH tiles in one forward (batched_tile_seconds
per tile). Prints one JSON line."""
import json
import os
import resource
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models_bench  # noqa: E402

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    """({name: array}, metadata) of a safetensors file, numpy only."""
    with open(path, "rb") as f:
        data = f.read()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__", {})
    base = 8 + length
    tensors = {name: np.frombuffer(data[base + info["data_offsets"][0]:base + info["data_offsets"][1]],
                                   dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
               for name, info in header.items()}
    return tensors, metadata


def main():
    checkpoint, arch, in_channels, classes, predict_batch, out_dir, *paths = sys.argv[1:]
    in_channels, classes, predict_batch = int(in_channels), int(classes), int(predict_batch)
    threads = int(os.environ.get("TRUGRADE_BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    tensors, metadata = read_safetensors(checkpoint)
    normalization = json.loads(metadata["normalization"])
    mean = torch.tensor(normalization["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(normalization["std"], dtype=torch.float32).view(1, -1, 1, 1)
    model = torch_models_bench.build(arch, classes, in_channels, int(metadata["input_size"]))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items() if not k.startswith("loss.")})
    model = model.to(memory_format=torch.channels_last).eval()
    os.makedirs(out_dir, exist_ok=True)

    def probabilities_of(batch):
        x = ((torch.from_numpy(batch) - mean) / std).contiguous(memory_format=torch.channels_last)
        return torch.softmax(model(x), dim=1)

    per_tile, with_io = [], []
    with torch.inference_mode():
        for i, path in enumerate(paths):
            started = time.perf_counter()
            probabilities = probabilities_of(np.load(path)[None])[0]
            mask = probabilities.argmax(0).to(torch.uint8).numpy()
            seconds = time.perf_counter() - started
            stem = os.path.splitext(os.path.basename(path))[0]
            Image.fromarray(mask).save(os.path.join(out_dir, f"{stem}_mask.png"))
            np.save(os.path.join(out_dir, f"{stem}_prob.npy"),
                    (probabilities[1] if classes == 2 else probabilities).numpy())
            if i:
                per_tile.append(seconds)
                with_io.append(time.perf_counter() - started)
        tiles = np.stack([np.load(p) for p in paths[1:predict_batch + 1]])
        probabilities_of(tiles[:1])
        started = time.perf_counter()
        probabilities_of(tiles)
        batched = (time.perf_counter() - started) / len(tiles)
    print(json.dumps({"side": "torch", "tiles": len(per_tile), "tile_seconds": float(np.median(per_tile)),
                      "tile_seconds_with_io": float(np.mean(with_io)), "batch": len(tiles),
                      "batched_tile_seconds": batched,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
