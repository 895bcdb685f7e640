"""Segmentation augmentation is applied identically to image and mask, on multi-band .npy
tiles as the training loader reads them: flips, 90-degree rotations and crops move both
pixel for pixel; affine (rotation, scale, shear) resamples the mask by nearest neighbour,
so it keeps only the original class values and agrees with the image's resampled content."""
import os

import numpy as np
import pytest

from trugrade import augment as A
from trugrade import data
from trugrade.synthetic import write_png_gray

BANDS = 11


def coded_tile(rng, h, w, classes=4, block=4):
    """(image float32 (11, h, w) whose band b is 10 * class + b exactly, mask uint8 (h, w))."""
    mask = rng.integers(0, classes, (h // block + 1, w // block + 1)).repeat(block, 0).repeat(block, 1)[:h, :w]
    image = np.stack([mask * 10.0 + b for b in range(BANDS)]).astype(np.float32)
    return image, mask.astype(np.uint8)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    root = tmp_path_factory.mktemp("coded")
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    rng = np.random.default_rng(0)
    for i in range(6):
        image, mask = coded_tile(rng, 24 + i, 28 - i)
        np.save(root / "images" / f"t{i}.npy", image)
        write_png_gray(str(root / "masks" / f"t{i}.png"), mask)
    return root


def test_loader_moves_multiband_tiles_and_masks_pixel_for_pixel(tiles):
    ds = data.scan(tiles, split=(1.0, 0.0, 0.0))
    assert ds.task == "segmentation"
    pipeline = [{"name": "random_crop", "size": 20}, {"name": "hflip", "p": 0.5}, {"name": "vflip", "p": 0.5},
                {"name": "rot90", "p": 0.5}]
    loader = data.Loader(ds, batch_size=3, pipeline=pipeline, workers=2, seed=7, channels=BANDS)
    changed = 0
    for epoch in range(4):
        for images, masks in loader.epoch(epoch):
            assert images.shape[1:] == (BANDS, 20, 20) and masks.shape[1:] == (20, 20)
            for b in range(BANDS):
                np.testing.assert_array_equal(images[:, b], masks * 10.0 + b)
            changed += 1
    assert changed == 8


@pytest.mark.parametrize("transforms", [
    [{"name": "hflip", "p": 1}], [{"name": "vflip", "p": 1}], [{"name": "rot90", "p": 1, "k": [1]}],
    [{"name": "rot90", "p": 1, "k": [3]}, {"name": "vflip", "p": 1}], [{"name": "random_crop", "size": 17}],
    [{"name": "center_crop", "size": [15, 19]}],
], ids=lambda t: "+".join(x["name"] for x in t))
def test_exact_geometry_is_the_same_numpy_move_of_image_and_mask(transforms):
    image, mask = coded_tile(np.random.default_rng(1), 26, 30)
    for index in range(3):
        out = A.Pipeline(transforms)(image, mask=mask, seed=3, index=index)
        for b in range(BANDS):
            np.testing.assert_array_equal(out["image"][b], out["mask"] * 10.0 + b)
    flipped = A.Pipeline([{"name": "hflip", "p": 1}])(image, mask=mask)
    np.testing.assert_array_equal(flipped["mask"], mask[:, ::-1])
    np.testing.assert_array_equal(flipped["image"], image[:, :, ::-1])


def test_affine_masks_are_nearest_neighbour_and_follow_the_image():
    image, mask = coded_tile(np.random.default_rng(2), 64, 64, block=8)
    pipeline = A.Pipeline([{"name": "affine", "degrees": 25, "scale": [0.8, 1.2], "translate": [0.1, 0.1],
                            "shear": 10}])
    for index in range(4):
        out = pipeline(image, mask=mask, seed=11, index=index)
        assert set(np.unique(out["mask"])) <= {0, 1, 2, 3}          # no interpolated class values
        # where the resampled image is a pure class colour (inside a block) the mask has that class
        coded = out["image"][0] / 10.0
        pure = np.abs(coded - np.round(coded)) < 1e-4
        inside = pure & (out["mask"] > 0)
        assert inside.sum() > 500
        agree = np.round(coded[inside]) == out["mask"][inside]
        assert agree.mean() > 0.97
