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
from .augment import Pipeline
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


_SAMPLER_NAMES = {"sequential": "sequential", "shuffle": "shuffled", "shuffled": "shuffled", "balanced": "balanced"}
BAD_FILE_POLICIES = ("skip", "stop")


def _manifest_json(manifest):
    if isinstance(manifest, Dataset):
        return json.dumps(manifest.data, ensure_ascii=False)
    if isinstance(manifest, dict):
        return json.dumps(manifest, ensure_ascii=False)
    return _C.manifest_load(os.fspath(manifest))


class Loader:
    """Batches of one split of a manifest, decoded and augmented by C worker threads.

        loader = trugrade.data.Loader(ds, split="train", batch_size=32, pipeline=[
            {"name": "random_resized_crop", "size": 224}, {"name": "hflip"},
            {"name": "normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}])
        for images, labels in loader.epoch(0):   # float32 [B, C, H, W], int64 [B]
            ...

    manifest: a Dataset, its dict, or the path of a saved manifest. pipeline: a
    trugrade.augment.Pipeline or its list of transforms; it must end at a fixed size
    (resize, center_crop, random_resized_crop, letterbox) unless every image of the split
    has one size. Segmentation manifests give (images, masks int64 [B, H, W]), the mask
    augmented with its image's draws.

    workers: the loader's own threads (not trugrade's kernel threads, see
    csrc/data/loader.h). ring_depth: batches made ahead (default 2 x workers); the
    memory is ring_depth x batch bytes, allocated once (`loader.info`). sampler:
    "sequential", "shuffle" or "balanced" (classification). cache_mb: keep up to this
    many MB of decoded images, first come first kept. on_bad_file: "skip" replaces a
    file that cannot be decoded by the next good sample of the epoch's order and lists
    it in `loader.skipped`; "stop" raises trugrade.DecodeError naming the file.
    channels: output channels (0: the first image's; gray is repeated to 3, alpha dropped).

    A batch depends only on (seed, epoch, its number): never on workers or timing.
    One epoch runs at a time: starting another ends the one before.
    """

    def __init__(self, manifest, split="train", batch_size=32, pipeline=None, workers=2, seed=0, sampler="shuffle",
                 cache_mb=0, on_bad_file="skip", ring_depth=0, channels=0):
        if split is not None and split not in SPLITS:
            raise TrugradeValueError(f"split {split!r} is not one of {', '.join(SPLITS)} (or None for all)")
        if sampler not in _SAMPLER_NAMES:
            raise TrugradeValueError(f"sampler {sampler!r} is not one of sequential, shuffle, balanced")
        if on_bad_file not in BAD_FILE_POLICIES:
            raise TrugradeValueError(f"on_bad_file {on_bad_file!r} is not one of {', '.join(BAD_FILE_POLICIES)}")
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise TrugradeValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if cache_mb < 0:
            raise TrugradeValueError(f"cache_mb must be >= 0, got {cache_mb!r}")
        if pipeline is not None and not isinstance(pipeline, Pipeline):
            pipeline = Pipeline(pipeline)
        self.pipeline = pipeline
        self.batch_size = int(batch_size)
        self.seed = _check_seed(seed)
        self._loader = _C.loader_create(
            _manifest_json(manifest), pipeline._pipeline if pipeline is not None else None,
            split if split is not None else "all", self.batch_size, workers=int(workers),
            ring_depth=int(ring_depth), sampler=_SAMPLER_NAMES[sampler], seed=self.seed,
            cache_bytes=int(cache_mb * 1024 * 1024), on_bad_file=on_bad_file, channels=int(channels))
        self.info = _C.loader_info(self._loader)
        self._running = None
        self._next_epoch = 0

    def __len__(self):
        """Batches per epoch (the last may be short)."""
        return -(-self.info["size"] // self.batch_size)

    def epoch(self, e):
        """The batches of epoch `e`: (images float32 [B, C, H, W], targets int64 [B] or [B, H, W])."""
        token = object()
        self._running = token
        _C.loader_start_epoch(self._loader, int(e))
        self._next_epoch = int(e) + 1
        return self._batches(token)

    def _batches(self, token):
        while True:
            if self._running is not token:
                raise RuntimeError("another epoch of this loader started; one epoch runs at a time")
            batch = _C.loader_next(self._loader)
            if batch is None:
                return
            images, targets, _ = batch
            yield np.asarray(images), np.asarray(targets)

    def __iter__(self):
        """The next epoch (0, 1, 2, ... in turn)."""
        return self.epoch(self._next_epoch)

    @property
    def skipped(self):
        """Files the skip policy left out so far: [{index, path, message}], by index."""
        return _C.loader_skipped(self._loader)

    @property
    def stats(self):
        """ring_depth, batch_bytes, ring_bytes, peak_slots_in_use, cache_bytes_used, cache_hits, decoded."""
        return _C.loader_stats(self._loader)

    def __repr__(self):
        c, h, w = self.info["shape"]
        return (f"trugrade.data.Loader(samples={self.info['size']}, batch_size={self.batch_size}, "
                f"shape=({c}, {h}, {w}), ring={self.info['ring_depth']} x {self.info['batch_bytes']} bytes)")
