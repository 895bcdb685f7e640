"""Data for training: image files, datasets (manifests, splits, samplers) and the batch loader.

Images: `read_image(path)` gives a (C, H, W) array in the file's own sample type (uint8,
uint16, or float32 for rescaled/signed/windowed DICOM and float64 NPY); the format
is found from the file's content, never its extension. `read_idx(path)` reads
MNIST-style IDX files, plain or .gz. A file that cannot be decoded raises
trugrade.DecodeError naming the file and the reason.

Datasets: `scan` recognises a folder's layout (class folders, split folders, nested
collections, a file,label CSV, images/ + masks/, COCO, YOLO, Pascal VOC), hashes every
image, reads every header (width, height, channels), reports what it skipped in `notes`
and assigns stratified, seeded train/val/test splits that keep duplicates together. A
`Dataset` is a thin wrapper over the manifest's dict; `save` writes it back through C,
which checks it first. All the work is done in C (csrc/data/).

    ds = trugrade.data.scan("xrays/", split=(0.8, 0.1, 0.1), seed=1)
    ds.save("xrays.manifest.json")
    order = trugrade.data.sampler_indices(ds, "balanced", seed=0, epoch=3)

Batches: `Loader` decodes and augments in C worker threads (see its docstring).
"""
import json
import os

import numpy as np

from . import _C
from .errors import DatasetError, TrugradeValueError

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's Image.MAX_IMAGE_PIXELS


def _max_pixels(value):
    if value is None:
        return 0
    value = int(value)
    if value <= 0:
        raise ValueError(f"max_pixels must be a positive int or None (the default {DEFAULT_MAX_PIXELS}), got {value}")
    return value


def read_image(path, max_pixels=None, window=False):
    """Decodes a PNG, JPEG, DICOM, NPY (or IDX) file into a numpy array (C, H, W).

    max_pixels: refuse images of more pixels (width x height) than this, from the header,
        before allocating (None: Pillow's limit, 89,478,485).
    window: DICOM only: apply the file's window centre/width, giving float32 in [0, 1].
    An IDX images file gives (N, H, W) uint8.
    """
    return np.asarray(_C.read_image(os.fspath(path), _max_pixels(max_pixels), bool(window)))


def read_idx(path, max_pixels=None):
    """Reads an IDX file (MNIST format, plain or gzip): images as (N, H, W) uint8, labels as (N,) int64."""
    return np.asarray(_C.read_idx(os.fspath(path), _max_pixels(max_pixels)))


def probe_image(path):
    """The header of an image file, without decoding: a dict with format, extension_format,
    extension_mismatch (the name's extension names another format than the content), count,
    channels, height, width, dtype."""
    return _C.probe_image(os.fspath(path))


SPLITS = ("train", "val", "test")
SAMPLER_KINDS = ("sequential", "shuffled", "balanced")


class Dataset:
    """A manifest: `data` is the dict of the JSON file (see csrc/data/manifest.c)."""

    def __init__(self, data):
        self.data = data

    @property
    def root(self):
        return self.data["root"]

    @property
    def task(self):
        return self.data["task"]

    @property
    def layout(self):
        return self.data["layout"]

    @property
    def classes(self):
        return self.data["classes"]

    @property
    def samples(self):
        return self.data["samples"]

    @property
    def notes(self):
        return self.data["notes"]

    def split(self, name):
        """The samples of one split ("train", "val" or "test")."""
        if name not in SPLITS:
            raise TrugradeValueError(f"split {name!r} is not one of {', '.join(SPLITS)}")
        return [s for s in self.samples if s["split"] == name]

    def save(self, path):
        """Checks the manifest and writes it as JSON (C writes the file)."""
        text = json.dumps(self.data, ensure_ascii=False)
        _C.manifest_save(text, os.fspath(path), f"manifest being saved to {os.fspath(path)}")

    def __len__(self):
        return len(self.samples)

    def __repr__(self):
        counts = {name: 0 for name in SPLITS}
        for s in self.samples:
            counts[s["split"]] += 1
        return (f"trugrade.Dataset(root={self.root!r}, task={self.task}, layout={self.layout}, "
                f"classes={len(self.classes)}, samples={len(self)} {counts}, notes={len(self.notes)})")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise TrugradeValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return int(seed)


def scan(path, split=(0.7, 0.15, 0.15), seed=0):
    """Scans the folder `path` into a Dataset. `split` is the (train, val, test)
    ratios for samples that no split folder places; `seed` makes the split repeatable."""
    ratios = tuple(float(r) for r in split)
    if len(ratios) != 3:
        raise TrugradeValueError(f"split must be three ratios (train, val, test), got {split!r}")
    text = _C.dataset_scan(os.fspath(path), ratios, _check_seed(seed))
    return Dataset(json.loads(text))


def load_manifest(path):
    """Reads a manifest written by Dataset.save (checked: errors give file, line and column)."""
    return Dataset(json.loads(_C.manifest_load(os.fspath(path))))


def sampler_indices(manifest, kind="shuffled", seed=0, epoch=0, oversample=None, split="train", length=None):
    """The order of one epoch as an int64 array of indices into manifest.samples.

    kind: "sequential", "shuffled", or "balanced" (each class equally likely, drawn
    with replacement; `length` draws, default the number of samples). oversample:
    {class name: times} repeats each sample of that class per epoch (sequential or
    shuffled). split: which samples take part (None: all). The order depends only on
    (seed, epoch)."""
    if not isinstance(manifest, Dataset):
        manifest = Dataset(manifest)
    if kind not in SAMPLER_KINDS:
        raise TrugradeValueError(f"sampler kind {kind!r} is not one of {', '.join(SAMPLER_KINDS)}")
    if split is not None and split not in SPLITS:
        raise TrugradeValueError(f"split {split!r} is not one of {', '.join(SPLITS)} (or None for all)")
    positions = [i for i, s in enumerate(manifest.samples) if split is None or s["split"] == split]
    classification = manifest.task == "classification"
    labels = [manifest.samples[i]["label"] for i in positions] if classification else [0] * len(positions)
    n_classes = len(manifest.classes) if classification else 1
    factors = None
    if oversample:
        if not classification:
            raise DatasetError(f"oversampling by class needs a classification manifest; {manifest.root} is "
                               f"{manifest.task}")
        factors = [1] * n_classes
        for name, times in oversample.items():
            if name not in manifest.classes:
                raise DatasetError(f"oversample: class {name!r} is not in the manifest of {manifest.root}; "
                                   f"its classes are {manifest.classes}")
            if isinstance(times, bool) or not isinstance(times, (int, np.integer)) or times < 0:
                raise TrugradeValueError(f"oversample: the factor of {name!r} must be an int >= 0, got {times!r}")
            factors[manifest.classes.index(name)] = int(times)
    if kind == "balanced" and not classification:
        raise DatasetError(f"class-balanced sampling needs a classification manifest; {manifest.root} is "
                           f"{manifest.task}")
    order = _C.sampler_indices(labels, n_classes, kind, _check_seed(seed), int(epoch), factors,
                               int(length or 0))
    return np.asarray(positions, dtype=np.int64)[np.asarray(order)]
