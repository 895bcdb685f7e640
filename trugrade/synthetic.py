"""SYNTHETIC segmentation data, clearly not real observations: for tests, demos and
benchmarks of the segmentation models when no labelled imagery is at hand.

1. synthetic_debris_tile / write_synthetic_debris: 11-band "satellite-like" tiles
   (default 256x256) of water with some land, sparse floating-debris patches (blobs and
   thin lines) with their own spectral signature, sensor noise and bright, spectrally flat
   clouds that occlude what is under them; mask 1 = debris, 0 = anything else. The debris
   share is set by `debris_ratio` (default 1/14, i.e. 1 debris pixel in 14) before clouds
   hide some of it. The spectra are invented shapes (water dark and falling with
   wavelength, vegetation with a red edge, debris brighter and flat in the near infrared
   with a dip in the shortwave infrared), not calibrated reflectances.
2. fashion_mnist_segmentation / write_fashion_mnist_segmentation: real Fashion-MNIST items
   pasted onto textured synthetic backgrounds, mask = item pixels above a threshold, class =
   item class + 1, background 0.

Writers lay the files out as trugrade's segmentation scan expects: images/<stem>.npy
(float32 (C, H, W), or uint8 (H, W) for Fashion-MNIST), masks/<stem>.png (8-bit gray,
class indices), and save the scanned manifest as manifest.json. Everything is seeded."""
import os
import struct
import zlib

import numpy as np

BANDS = 11
# invented per-band shapes over 11 bands ordered by wavelength (visible .. shortwave infrared)
WATER = np.array([0.085, 0.075, 0.062, 0.048, 0.035, 0.026, 0.020, 0.015, 0.010, 0.006, 0.004], np.float32)
LAND = np.array([0.045, 0.060, 0.050, 0.090, 0.210, 0.300, 0.330, 0.340, 0.320, 0.220, 0.140], np.float32)
DEBRIS = np.array([0.110, 0.120, 0.125, 0.130, 0.150, 0.175, 0.190, 0.195, 0.160, 0.090, 0.110], np.float32)
CLOUD_LEVEL = 0.72


def _blur(field, sigma):
    """Gaussian blur (periodic) of a 2-D field by FFT."""
    h, w = field.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    kernel = np.exp(-2 * (np.pi * sigma) ** 2 * (fx ** 2 + fy ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(field) * kernel))


def _smooth_noise(rng, size, sigma):
    field = _blur(rng.standard_normal((size, size)), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def synthetic_debris_tile(rng, size=256, debris_ratio=1 / 14, cloud_cover=0.08, noise=0.008, bands=BANDS):
    """One SYNTHETIC tile: (image float32 (bands, size, size), mask uint8 (size, size)).
    `rng` is a numpy Generator; cloud_cover is the expected cloudy fraction (0: none)."""
    if bands != BANDS:
        raise ValueError(f"the synthetic spectra have {BANDS} bands, got bands={bands}")
    if not 0 < debris_ratio < 0.5:
        raise ValueError(f"debris_ratio must be in (0, 0.5), got {debris_ratio}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # land: a smooth field above a threshold, kept to one side of the tile on some tiles
    land = (_smooth_noise(rng, size, size / 10) + (xx / size - 0.5) * rng.uniform(-3, 3)) > rng.uniform(1.0, 2.5)
    water = ~land
    # debris score: a few elongated blobs plus thin lines (windrows), on water only
    score = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(3, 9)):
        cy, cx = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        major, minor = rng.uniform(4, 20), rng.uniform(2, 8)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        score = np.maximum(score, np.exp(-0.5 * ((u / major) ** 2 + (v / minor) ** 2)))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, size, 2)
        angle = rng.uniform(0, np.pi)
        length, width = rng.uniform(size / 6, size / 2), rng.uniform(0.8, 2.0)
        u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
        score = np.maximum(score, np.exp(-0.5 * (v / width) ** 2) * (np.abs(u) < length / 2))
    score = score * (1 + 0.3 * _smooth_noise(rng, size, 2)) * water
    count = int(round(debris_ratio * size * size))
    debris = np.zeros(size * size, bool)
    debris[np.argsort(-score.reshape(-1), kind="stable")[:count]] = True
    debris = debris.reshape(size, size) & water
    # spectra: per-pixel mixtures with texture, debris partly sub-pixel (abundance 0.5..1)
    texture = 1 + 0.08 * _smooth_noise(rng, size, 6)
    image = np.where(land[None], LAND[:, None, None], WATER[:, None, None]) * texture[None]
    abundance = np.clip(0.75 + 0.25 * _smooth_noise(rng, size, 3), 0.5, 1.0)
    image = np.where(debris[None], abundance * DEBRIS[:, None, None] + (1 - abundance) * image, image)
    image = image * rng.uniform(0.85, 1.15)   # illumination
    # clouds: bright and flat, thick cores occlude (debris under them is not visible: mask 0)
    if cloud_cover > 0:
        cloud_field = _smooth_noise(rng, size, size / 16)
        threshold = np.quantile(cloud_field, 1 - cloud_cover) if rng.random() < 0.7 else np.inf
        opacity = np.clip((cloud_field - threshold) * 3 + 0.5, 0, 1) if np.isfinite(threshold) else 0 * cloud_field
        flat = CLOUD_LEVEL * (1 + 0.05 * _smooth_noise(rng, size, 4))
        image = image * (1 - opacity[None]) + flat[None] * opacity[None]
        debris &= opacity < 0.5
    image = image + rng.normal(0, noise, image.shape)
    return image.astype(np.float32), debris.astype(np.uint8)


def write_png_gray(path, array):
    """An 8-bit grayscale PNG of a uint8 (H, W) array (zlib, no external library)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w = array.shape
    raw = b"".join(b"\x00" + array[i].tobytes() for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _write_dataset(root, samples, split, seed):
    from . import datasets
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    for stem, image, mask in samples:
        np.save(os.path.join(root, "images", f"{stem}.npy"), image)
        write_png_gray(os.path.join(root, "masks", f"{stem}.png"), mask)
    dataset = datasets.scan(root, split=split, seed=seed)
    dataset.save(os.path.join(root, "manifest.json"))
    return dataset


def write_synthetic_debris(root, count=32, seed=0, size=256, debris_ratio=1 / 14, cloud_cover=0.08,
                           split=(0.7, 0.15, 0.15)):
    """Writes `count` SYNTHETIC debris tiles under root (images/*.npy (11, size, size) float32,
    masks/*.png) and root/manifest.json; returns the scanned trugrade Dataset."""
    rng = np.random.default_rng(seed)
    samples = ((f"synthetic_{i:05d}",) + synthetic_debris_tile(rng, size, debris_ratio, cloud_cover)
               for i in range(count))
    return _write_dataset(os.fspath(root), samples, split, seed)


def _texture(rng, size):
    """A textured gray background (uint8): smooth noise, stripes and speckle."""
    yy, xx = np.mgrid[0:size, 0:size]
    base = 60 + 25 * _smooth_noise(rng, size, rng.uniform(1.5, 6))
    angle = rng.uniform(0, np.pi)
    base += 15 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * rng.uniform(0.2, 0.8))
    base += rng.normal(0, 6, (size, size))
    return np.clip(base, 0, 255)


def fashion_mnist_segmentation(images, labels, count, size=64, items=(1, 3), threshold=40, seed=0):
    """`count` scenes (image uint8 (size, size), mask uint8 (size, size)) made of 1 to 3 real
    Fashion-MNIST items (images (N, 28, 28) uint8, labels (N,)) pasted at random places on
    textured backgrounds; mask = item class + 1 where the item's pixel > threshold, later items
    on top. Returns (images (count, size, size), masks (count, size, size), item indices used)."""
    rng = np.random.default_rng(seed)
    out_images = np.zeros((count, size, size), np.uint8)
    out_masks = np.zeros((count, size, size), np.uint8)
    used = []
    for k in range(count):
        canvas = _texture(rng, size)
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(items[0], items[1] + 1)):
            i = int(rng.integers(0, len(images)))
            used.append(i)
            item = images[i].astype(np.float64)
            y, x = rng.integers(0, size - 28 + 1, 2)
            inside = item > threshold
            region = canvas[y:y + 28, x:x + 28]
            region[inside] = item[inside]
            mask[y:y + 28, x:x + 28][inside] = int(labels[i]) + 1
        out_images[k] = np.clip(canvas, 0, 255).astype(np.uint8)
        out_masks[k] = mask
    return out_images, out_masks, np.array(used, np.int64)


def write_fashion_mnist_segmentation(root, count=200, size=64, seed=0, split=(0.7, 0.15, 0.15),
                                     source="/usr/share/datasets/fashion-mnist"):
    """Writes the Fashion-MNIST scenes (images/*.npy uint8 (size, size), masks/*.png, classes 0..10)
    under root with root/manifest.json; returns the scanned Dataset."""
    from .data import read_idx
    images = read_idx(os.path.join(source, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(source, "train-labels-idx1-ubyte.gz"))
    scenes, masks, _ = fashion_mnist_segmentation(images, labels, count, size=size, seed=seed)
    samples = ((f"fashion_scene_{i:05d}", scenes[i], masks[i]) for i in range(count))
    return _write_dataset(os.fspath(root), samples, split, seed)
