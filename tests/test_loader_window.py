"""The loader's JPEG window path: without a cache, a classification loader decodes only the
part of each JPEG that the sample's crop reads (libjpeg-turbo crop + skip + early stop).
The batches must be the very bytes of the whole-image path (a cache forces it) for every
chroma subsampling, progressive files, gray files, EXIF-rotated files (which fall back),
and whatever the worker count; a truncated file is still reported as bad."""
import os

import numpy as np
import pytest
from PIL import Image

from trugrade import data

PIPELINES = [
    [{"name": "random_resized_crop", "size": 32}, {"name": "hflip"},
     {"name": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}],
    [{"name": "random_resized_crop", "size": [17, 40], "scale": [0.02, 0.3]}, {"name": "vflip"}],
    [{"name": "center_crop", "size": 24}, {"name": "rot90"}, {"name": "color_jitter", "brightness": 0.3}],
]


def noisy(height, width, seed):
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 120 + 60 * np.sin(x / (3 + seed % 5))[..., None] + 40 * np.cos(y / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 15, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    i = 0
    for subsampling in (0, 1, 2):
        for progressive in (False, True):
            for height, width in ((61, 90), (130, 47), (33, 33)):
                folder = root / ("p" if progressive else "b")
                os.makedirs(folder, exist_ok=True)
                Image.fromarray(noisy(height, width, i)).save(folder / f"{i}.jpg", quality=90, subsampling=subsampling,
                                                              progressive=progressive)
                i += 1
    rotated = Image.fromarray(noisy(50, 70, 99))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.save(root / "b" / "rotated.jpg", quality=90, exif=exif)
    return root


def batches(loader, epoch):
    return [(x.tobytes(), y.tobytes()) for x, y in loader.epoch(epoch)]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_window_path_gives_the_whole_decodes_bytes(jpegs, pipeline):
    ds = data.scan(jpegs, split=(1.0, 0.0, 0.0))
    window = data.Loader(ds, batch_size=5, pipeline=pipeline, workers=2, seed=11)
    window_one = data.Loader(ds, batch_size=5, pipeline=pipeline, workers=1, seed=11)
    whole = data.Loader(ds, batch_size=5, pipeline=pipeline, workers=1, seed=11, cache_mb=64)
    for epoch in range(3):
        expected = batches(whole, epoch)
        assert batches(window, epoch) == expected
        assert batches(window_one, epoch) == expected
    assert whole.stats["cache_hits"] > 0 and window.stats["cache_hits"] == 0


def test_gray_files_take_the_window_path_or_convert(tmp_path):
    for i in range(6):
        os.makedirs(tmp_path / "ab"[i % 2], exist_ok=True)
        Image.fromarray(noisy(40 + i, 60, i)[..., 0]).save(tmp_path / "ab"[i % 2] / f"g{i}.jpg", quality=85)
    ds = data.scan(tmp_path, split=(1.0, 0.0, 0.0))
    for channels in (1, 3):   # 1: the window path; 3: declined, decoded whole and the plane repeated
        window = data.Loader(ds, batch_size=4, pipeline=PIPELINES[1], seed=2, channels=channels)
        whole = data.Loader(ds, batch_size=4, pipeline=PIPELINES[1], seed=2, channels=channels, cache_mb=8)
        assert batches(window, 0) == batches(whole, 0)
        assert next(iter(window.epoch(1)))[0].shape[1] == channels


def test_a_truncated_jpeg_is_reported_whatever_the_crop(tmp_path):
    for i in range(8):
        os.makedirs(tmp_path / "ab"[i % 2], exist_ok=True)
        Image.fromarray(noisy(64, 80, i)).save(tmp_path / "ab"[i % 2] / f"{i}.jpg", quality=90)
    cut = tmp_path / "b" / "3.jpg"
    cut.write_bytes(cut.read_bytes()[:-600])   # the top rows survive, the end marker does not
    ds = data.scan(tmp_path, split=(1.0, 0.0, 0.0))
    for epoch in range(3):
        loader = data.Loader(ds, batch_size=4, pipeline=PIPELINES[0], workers=2, seed=epoch)
        assert sum(len(y) for _, y in loader.epoch(epoch)) == 8
        assert [s["path"] for s in loader.skipped] == [str(cut)]
