"""trugrade.synthetic: the SYNTHETIC debris tiles and the Fashion-MNIST scenes, and the
segmentation datasets written from them (scanned back by trugrade, masks decoded by trugrade)."""
import os

import numpy as np
import pytest

from trugrade import data, synthetic

FASHION = "/usr/share/datasets/fashion-mnist"


def test_debris_tile_ratio_signature_and_seed():
    image, mask = synthetic.synthetic_debris_tile(np.random.default_rng(3), size=128, cloud_cover=0.0)
    assert image.shape == (11, 128, 128) and image.dtype == np.float32 and mask.dtype == np.uint8
    assert mask.mean() == pytest.approx(1 / 14, abs=1e-3)   # exact before clouds
    debris, other = image[:, mask == 1].mean(1), image[:, mask == 0].mean(1)
    assert debris[6] > 2 * other[6] or debris[6] > other[6] + 0.05   # bright in the near infrared
    again, again_mask = synthetic.synthetic_debris_tile(np.random.default_rng(3), size=128, cloud_cover=0.0)
    np.testing.assert_array_equal(image, again)
    np.testing.assert_array_equal(mask, again_mask)


def test_clouds_are_bright_flat_and_occlude():
    rng = np.random.default_rng(11)
    for _ in range(6):
        image, mask = synthetic.synthetic_debris_tile(rng, size=96, cloud_cover=0.3)
        bright = image.mean(0) > 0.5
        if bright.sum() > 50:
            break
    assert bright.sum() > 50
    spectra = image[:, bright]
    assert spectra.std(0).mean() < 0.1 * spectra.mean()   # spectrally flat
    assert mask[bright].mean() < 0.05                      # debris under thick cloud is hidden
    assert mask.mean() <= 1 / 14 + 1e-3


def test_write_synthetic_debris(tmp_path):
    dataset = synthetic.write_synthetic_debris(tmp_path, count=5, size=64, seed=2)
    assert dataset.task == "segmentation" and len(dataset) == 5
    assert os.path.exists(tmp_path / "manifest.json")
    sample = dataset.samples[0]
    image = np.load(tmp_path / sample["path"])
    mask = np.asarray(data.read_image(str(tmp_path / sample["mask"])))
    assert image.shape == (11, 64, 64)
    assert mask.reshape(64, 64).max() <= 1 and mask.sum() > 0


def test_fashion_mnist_scenes(tmp_path):
    images = data.read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))[:100]
    labels = data.read_idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"))[:100]
    scenes, masks, used = synthetic.fashion_mnist_segmentation(images, labels, 8, size=48, items=(1, 1), seed=4)
    assert scenes.shape == masks.shape == (8, 48, 48)
    for scene, mask, i in zip(scenes, masks, used):
        assert set(np.unique(mask)) == {0, int(labels[i]) + 1}
        assert (mask > 0).sum() == (images[i] > 40).sum()    # one item: every bright pixel labelled
        np.testing.assert_array_equal(np.sort(scene[mask > 0]), np.sort(images[i][images[i] > 40]))
    dataset = synthetic.write_fashion_mnist_segmentation(tmp_path, count=6, size=48, seed=1, source=FASHION)
    assert dataset.task == "segmentation" and len(dataset) == 6
