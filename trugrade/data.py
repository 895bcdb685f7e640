"""Reading image files into numpy arrays, with the decoders of the C core.

`read_image(path)` gives a (C, H, W) array in the file's own sample type (uint8,
uint16, or float32 for rescaled/signed/windowed DICOM and float64 NPY); the format
is found from the file's content, never its extension. `read_idx(path)` reads
MNIST-style IDX files, plain or .gz. A file that cannot be decoded raises
trugrade.DecodeError naming the file and the reason.
"""
import os

import numpy as np

from . import _C

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
