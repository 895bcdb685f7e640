"""trugrade.augment: geometric consistency of image, mask and boxes; equality with numpy and
PyTorch where a transform has an exact counterpart; determinism; configuration errors."""
import threading

import numpy as np
import pytest
import torch

import trugrade
from trugrade import augment as A


def painted(h=60, w=80, rect=(12, 20, 42, 50), channels=3, dtype=np.uint8):
    """An image with a bright rectangle, its mask (class 3) and its box; rect = (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = rect
    image = np.full((channels, h, w), 10, dtype=dtype)
    image[:, y1:y2, x1:x2] = 200
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 3
    boxes = np.array([rect], dtype=np.float32)
    return image, mask, boxes, np.array([7], dtype=np.int64)


def mask_box(mask, value=3):
    ys, xs = np.nonzero(mask == value)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def check_consistent(out, tol=1.5):
    """The box agrees with the mask's rectangle, and the image is bright exactly where the mask says."""
    mask, image = out["mask"], out["image"]
    assert out["boxes"].shape == (1, 4) and out["labels"].tolist() == [7]
    np.testing.assert_allclose(out["boxes"][0], mask_box(mask), atol=tol)
    inside = mask == 3
    assert image[:, inside].mean() > 150
    assert image[:, ~inside & (mask == 0)].mean() < 60


GEOMETRIC = [
    [{"name": "hflip", "p": 1}],
    [{"name": "vflip", "p": 1}],
    [{"name": "rot90", "p": 1, "k": [1]}],
    [{"name": "rot90", "p": 1, "k": [3]}, {"name": "hflip", "p": 1}],
    [{"name": "random_resized_crop", "size": [48, 64], "scale": [0.6, 1.0]}],
    [{"name": "center_crop", "size": [50, 70]}],
    [{"name": "resize", "size": [90, 40]}],
    [{"name": "letterbox", "size": 96, "fill": 0}],
    [{"name": "affine", "degrees": 0, "scale": [0.8, 1.2], "translate": [0.1, 0.1]}],
    [{"name": "vflip", "p": 1}, {"name": "resize", "size": [30, 40]}, {"name": "rot90", "p": 1}],
]


@pytest.mark.parametrize("transforms", GEOMETRIC, ids=lambda t: "+".join(x["name"] for x in t))
def test_geometry_keeps_image_mask_boxes_consistent(transforms):
    image, mask, boxes, labels = painted()
    pipeline = A.Pipeline(transforms)
    for index in range(4):
        out = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=5, index=index)
        check_consistent(out)


def test_affine_rotation_box_encloses_mask():
    image, mask, boxes, labels = painted(80, 80, (30, 30, 50, 50))
    out = A.Pipeline([{"name": "affine", "degrees": 30}])(image, mask=mask, boxes=boxes, labels=labels, index=2)
    box, mbox = out["boxes"][0], mask_box(out["mask"])
    assert np.all(box[:2] <= mbox[:2] + 1.5) and np.all(box[2:] >= mbox[2:] - 1.5)
    np.testing.assert_allclose(box, mbox, atol=2.5)


def test_letterbox_reports_scale_and_offsets():
    image, mask, boxes, labels = painted(60, 80)
    out = A.Pipeline([{"name": "letterbox", "size": 160, "fill": 114}])(image, mask=mask, boxes=boxes, labels=labels)
    f = out["transform"]
    assert out["image"].shape == (3, 160, 160)
    np.testing.assert_allclose([f[0, 0], f[1, 1], f[0, 2], f[1, 2]], [2.0, 2.0, 0.0, 20.0])
    np.testing.assert_allclose(out["boxes"][0], boxes[0] * 2 + [0, 20, 0, 20], atol=1e-4)
    assert np.all(out["image"][:, :20] == 114) and np.all(out["mask"][:20] == 0)
    check_consistent(out)


def test_crop_drops_boxes_that_leave():
    image, mask, _, _ = painted()
    boxes = np.array([[0, 0, 10, 10], [60, 40, 80, 60], [0, 0, 80, 60]], dtype=np.float32)
    pipeline = A.Pipeline([{"name": "random_crop", "size": [30, 30]}], min_box_area_fraction=0.15)
    for index in range(10):
        out = pipeline(image, boxes=boxes, labels=np.arange(3), index=index)
        assert 2 in out["labels"].tolist()
        assert np.all(out["boxes"] >= 0) and np.all(out["boxes"] <= 30)
        kept = out["boxes"][out["labels"] == 2][0]
        np.testing.assert_allclose(kept, [0, 0, 30, 30])


def test_mosaic_remaps_every_sample():
    samples = [painted(60, 80, rect) for rect in [(5, 5, 30, 30), (40, 10, 70, 40), (10, 30, 40, 55), (50, 30, 75, 50)]]
    pipeline = A.Pipeline([{"name": "mosaic", "size": 128}], min_box_area_fraction=0.0)
    for index in range(5):
        others = [{"image": s[0], "mask": ((s[1] > 0) * (4 + i)).astype(np.uint8), "boxes": s[2], "labels": s[3]}
                  for i, s in enumerate(samples[1:])]
        image, mask, boxes, labels = samples[0]
        out = pipeline(image, mask=mask, boxes=boxes, labels=labels, index=index, mosaic=others)
        assert out["image"].shape == (3, 128, 128)
        classes = [3, 4, 5, 6]
        for box in out["boxes"]:
            x1, y1, x2, y2 = np.round(box).astype(int)
            region = out["mask"][y1:y2, x1:x2]
            values = set(np.unique(region).tolist()) & set(classes)
            assert len(values) >= 1
            c = max(values, key=lambda v: (region == v).sum())
            np.testing.assert_allclose(box, mask_box(out["mask"][y1:y2, x1:x2], c) + [x1, y1, x1, y1], atol=1.5)
            assert out["image"][:, out["mask"] == c].mean() > 150


def test_flips_and_rot90_equal_numpy():
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16, np.float32):
        image = (rng.random((5, 13, 17)) * 200).astype(dtype)
        mask = rng.integers(0, 9, (13, 17)).astype(np.int32)
        out = A.Pipeline([{"name": "hflip", "p": 1}])(image, mask=mask)
        assert np.array_equal(out["image"], image[:, :, ::-1].astype(np.float32))
        assert np.array_equal(out["mask"], mask[:, ::-1])
        out = A.Pipeline([{"name": "vflip", "p": 1}])(image, mask=mask)
        assert np.array_equal(out["image"], image[:, ::-1].astype(np.float32))
        for k in (1, 2, 3):
            out = A.Pipeline([{"name": "rot90", "p": 1, "k": k}])(image, mask=mask)
            assert np.array_equal(out["image"], np.rot90(image, k, axes=(1, 2)).astype(np.float32))
            assert np.array_equal(out["mask"], np.rot90(mask, k))


@pytest.mark.parametrize("size", [(20, 30), (80, 100), (37, 51), (10, 120), (1, 1), (64, 7)])
def test_resize_equals_torch_bilinear(size):
    x = np.random.default_rng(1).random((3, 37, 51), dtype=np.float32)
    out = A.Pipeline([{"name": "resize", "size": list(size)}])(x)["image"]
    expected = torch.nn.functional.interpolate(torch.from_numpy(x)[None], size=size, mode="bilinear",
                                               align_corners=False)[0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_random_resized_crop_uint8_matches_torch_on_its_crop():
    image = np.random.default_rng(2).integers(0, 256, (3, 375, 500), dtype=np.uint8)
    out = A.Pipeline([{"name": "random_resized_crop", "size": 224}])(image, index=9)
    f = out["transform"]
    w, h = 224 / f[0, 0], 224 / f[1, 1]
    left, top = -f[0, 2] / f[0, 0], -f[1, 2] / f[1, 1]
    crop = image[:, round(top):round(top + h), round(left):round(left + w)].astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(crop)[None], size=(224, 224), mode="bilinear",
                                               align_corners=False)[0].numpy()
    # NOTE: PyTorch computes source coordinates in float32, trugrade in float64: weights differ by ~1e-5.
    np.testing.assert_allclose(out["image"], expected, atol=1e-2, rtol=0)


def test_normalize_equals_numpy():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (3, 9, 11), dtype=np.uint8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    out = A.Pipeline([{"name": "normalize", "mean": mean, "std": std}])(image)["image"]
    expected = (image / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    bands = rng.integers(0, 4096, (11, 5, 6), dtype=np.uint16)
    out = A.Pipeline([{"name": "normalize", "mean": [100.0], "std": [50.0], "value_scale": 1}])(bands)["image"]
    np.testing.assert_allclose(out, (bands - 100.0) / 50.0, atol=1e-4)


def gray(x):
    return 0.2989 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def test_color_jitter_brightness_and_contrast_follow_torchvision_formulas():
    x = np.random.default_rng(4).random((3, 16, 16), dtype=np.float32)
    out = A.Pipeline([{"name": "color_jitter", "brightness": [1.3, 1.3]}])(x)["image"]
    np.testing.assert_allclose(out, np.clip(x * 1.3, 0, 1), atol=1e-6)
    out = A.Pipeline([{"name": "color_jitter", "contrast": [0.6, 0.6]}])(x)["image"]
    np.testing.assert_allclose(out, np.clip(0.6 * x + 0.4 * gray(x).mean(), 0, 1), atol=1e-5)
    out = A.Pipeline([{"name": "color_jitter", "saturation": [1.5, 1.5]}])(x)["image"]
    np.testing.assert_allclose(out, np.clip(1.5 * x - 0.5 * gray(x)[None], 0, 1), atol=1e-5)
    one = x[:1]
    out = A.Pipeline([{"name": "color_jitter", "contrast": [0.5, 0.5], "saturation": 0.5, "hue": 0.3}])(one)["image"]
    np.testing.assert_allclose(out, np.clip(0.5 * one + 0.5 * one.mean(), 0, 1), atol=1e-5)


def test_hue_zero_shift_is_identity_and_full_turn_returns():
    x = np.random.default_rng(5).random((3, 8, 8), dtype=np.float32)
    out = A.Pipeline([{"name": "color_jitter", "hue": [0.0, 0.0]}])(x)["image"]
    np.testing.assert_allclose(out, x, atol=1e-6)
    out = A.Pipeline([{"name": "color_jitter", "hue": [0.5, 0.5]}])(x)["image"]
    back = A.Pipeline([{"name": "color_jitter", "hue": [0.5, 0.5]}])(out)["image"]
    np.testing.assert_allclose(back, x, atol=1e-4)


def test_blur_noise_erasing_run_and_keep_shape():
    image = np.random.default_rng(6).integers(0, 256, (3, 20, 24), dtype=np.uint8)
    pipeline = A.Pipeline([{"name": "gaussian_blur", "kernel_size": 5, "sigma": [1.0, 1.0]},
                           {"name": "gaussian_noise", "std": 0.05},
                           {"name": "random_erasing", "p": 1, "value": "random"}])
    out = pipeline(image)["image"]
    assert out.shape == (3, 20, 24) and np.isfinite(out).all()
    flat = np.full((1, 9, 9), 50, dtype=np.uint8)
    out = A.Pipeline([{"name": "gaussian_blur", "kernel_size": 7, "sigma": 2.0}])(flat)["image"]
    np.testing.assert_allclose(out, 50, atol=1e-4)


def test_same_draws_same_bytes_and_different_index_differs():
    image, mask, boxes, labels = painted()
    pipeline = A.Pipeline([{"name": "random_resized_crop", "size": 32}, {"name": "hflip"},
                           {"name": "color_jitter", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
                           {"name": "gaussian_noise", "std": 0.02}])
    a = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=1, epoch=2, index=3)
    b = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=1, epoch=2, index=3)
    c = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=1, epoch=2, index=4)
    d = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=1, epoch=3, index=3)
    assert a["image"].tobytes() == b["image"].tobytes() and a["mask"].tobytes() == b["mask"].tobytes()
    assert a["boxes"].tobytes() == b["boxes"].tobytes()
    assert a["image"].tobytes() != c["image"].tobytes()
    assert a["image"].tobytes() != d["image"].tobytes()


def test_thread_count_does_not_change_results():
    image, mask, boxes, labels = painted()
    pipeline = A.Pipeline([{"name": "rot90"}, {"name": "affine", "degrees": 20, "scale": [0.9, 1.1]},
                           {"name": "color_jitter", "brightness": 0.3}, {"name": "gaussian_noise", "std": 0.05}])
    sample = {"image": image, "mask": mask, "boxes": boxes, "labels": labels}
    before = trugrade.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            trugrade.set_num_threads(threads)
            results.append(pipeline.many([[sample]] * 6, seed=9))
    finally:
        trugrade.set_num_threads(before)
    for one, two in zip(*results):
        for key in ("image", "mask", "boxes", "labels"):
            assert one[key].tobytes() == two[key].tobytes()
    serial = [pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=9, index=i) for i in range(6)]
    outputs = [None] * 6

    def work(i):
        outputs[i] = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=9, index=i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, o in zip(serial, outputs):
        assert s["image"].tobytes() == o["image"].tobytes() and s["boxes"].tobytes() == o["boxes"].tobytes()
    for s, r in zip(serial, results[0]):
        assert s["image"].tobytes() == r["image"].tobytes()


def test_preview_returns_n_samples():
    image, mask, boxes, labels = painted()
    grid = A.preview(image, [{"name": "random_resized_crop", "size": 40}, {"name": "hflip"}], n=5, mask=mask,
                     boxes=boxes, seed=3)
    assert len(grid) == 5
    assert all(g["image"].shape == (3, 40, 40) and g["mask"].shape == (40, 40) for g in grid)
    assert len({g["image"].tobytes() for g in grid}) > 1


def test_multiscale_size_depends_on_seed_and_batch_only():
    sizes = [320, 416, 512]
    drawn = [A.multiscale_size(sizes, 7, b) for b in range(30)]
    assert set(drawn) <= set(sizes) and len(set(drawn)) > 1
    assert drawn == [A.multiscale_size(sizes, 7, b) for b in range(30)]
    pipeline = A.Pipeline([{"name": "multi_scale", "sizes": sizes, "batch_size": 4}])
    shapes = [pipeline.output_shape((3, 100, 150), seed=7, index=i) for i in range(8)]
    assert len(set(shapes[:4])) == 1 and len(set(shapes[4:])) == 1
    image, mask, boxes, labels = painted()
    out = pipeline(image, mask=mask, boxes=boxes, labels=labels, seed=7, index=5)
    assert out["image"].shape == shapes[5]
    check_consistent(out, tol=2.5)


@pytest.mark.parametrize("transforms, words", [
    ([{"name": "hflip", "p": -0.5}], ["hflip", "p", "-0.5"]),
    ([{"name": "no_such_thing"}], ["no_such_thing", "known"]),
    ([{"name": "random_resized_crop", "size": 32, "scal": [0.1, 1]}], ["random_resized_crop", "scal"]),
    ([{"name": "random_resized_crop", "size": 32, "scale": [0.9, 0.1]}], ["random_resized_crop", "scale"]),
    ([{"name": "resize"}], ["resize", "size"]),
    ([{"name": "gaussian_blur", "kernel_size": 4}], ["gaussian_blur", "kernel_size"]),
    ([{"name": "hflip"}, {"name": "mosaic", "size": 64}], ["mosaic", "first"]),
    ([{"name": "normalize", "std": [1.0]}], ["normalize", "mean"]),
    ([{"name": "color_jitter", "hue": 0.7}], ["color_jitter", "hue"]),
])
def test_bad_configuration_raises_config_error(transforms, words):
    with pytest.raises(trugrade.ConfigError) as error:
        A.Pipeline(transforms)
    for word in words:
        assert word in str(error.value)


def test_errors_that_depend_on_the_input():
    image = np.zeros((3, 20, 20), dtype=np.uint8)
    with pytest.raises(trugrade.ConfigError, match=r"random_crop.*larger than the image.*pad_if_needed"):
        A.Pipeline([{"name": "random_crop", "size": 32}])(image)
    out = A.Pipeline([{"name": "random_crop", "size": 32, "pad_if_needed": True, "fill": 5}])(image)
    assert out["image"].shape == (3, 32, 32) and (out["image"] == 5).any()
    with pytest.raises(trugrade.ConfigError, match=r"normalize.*3 values.*11 channels"):
        A.Pipeline([{"name": "normalize", "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}])(
            np.zeros((11, 8, 8), dtype=np.uint16))
    with pytest.raises(trugrade.DTypeError):
        A.Pipeline([{"name": "hflip"}])(np.zeros((3, 4, 4), dtype=np.int32))
    with pytest.raises(trugrade.ShapeError):
        A.Pipeline([{"name": "hflip"}])(image, mask=np.zeros((4, 4), dtype=np.uint8))
