"""The dataset validator: every kind of planted problem is found, clean data gives no false alarm.

Datasets are written with real encoders (Pillow PNG and JPEG); damaged files are made by cutting
or overwriting bytes of files those encoders wrote.
"""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFilter

import trugrade
from trugrade import validator
from trugrade.errors import DatasetError


def picture(seed, size=(64, 64)):
    """A synthetic photo-like RGB image: a background, coloured blocks and a little noise."""
    r = np.random.default_rng(seed)
    h, w = size
    a = np.zeros((h, w, 3), np.int64) + r.integers(60, 200)
    for _ in range(8):
        x, y = r.integers(0, max(1, w - 16)), r.integers(0, max(1, h - 16))
        a[y:y + 16, x:x + 16] = r.integers(0, 256, 3)
    a += r.integers(0, 20, (h, w, 3))
    return np.clip(a, 0, 255).astype(np.uint8)


def save(path, pixels, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, **kw)


def write_classification(root, classes=("cat", "dog"), per_split=(12, 4, 4), seed=0):
    k = seed * 1000
    for split, n in zip(("train", "val", "test"), per_split):
        for c in classes:
            for i in range(n):
                k += 1
                save(f"{root}/{split}/{c}/{i}.png", picture(k))
    return k


def files_of(report, kind):
    found = report.of_kind(kind)
    return {p for f in found for p in f.files}


# --------------------------------------------------------------------------- clean data


def test_clean_classification_has_no_findings(tmp_path):
    write_classification(tmp_path / "clean")
    report = trugrade.validate_dataset(tmp_path / "clean")
    assert report.findings == [], report.summary()
    assert report.stats["class_counts"]["train"] == [12, 12]
    assert report.stats["files_failed"] == 0


def test_clean_detection_and_segmentation_have_no_findings(tmp_path):
    root = tmp_path / "yolo"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [car, person]\n")
    for i in range(10):
        save(f"{root}/images/train/{i}.png", picture(i))
        (root / "labels" / "train" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.3\n{(i + 1) % 2} 0.3 0.3 0.1 0.1\n")
    report = trugrade.validate_dataset(root)
    assert report.task == "detection"
    assert [f for f in report.findings if f.check != "balance"] == [], report.summary()

    seg = tmp_path / "seg"
    for i in range(10):
        save(f"{seg}/images/{i}.png", picture(100 + i))
        mask = np.zeros((64, 64), np.uint8)
        mask[10:30, 10:30] = 1
        mask[40:50, 5:60] = 2
        save(f"{seg}/masks/{i}.png", mask)
    report = trugrade.validate_dataset(seg, num_classes=3)
    assert report.task == "segmentation"
    assert [f for f in report.findings if f.severity != "info" and f.check != "balance"] == [], report.summary()
    assert report.stats["class_unit"] == "pixels"


# --------------------------------------------------------------------------- planted problems: classification


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted") / "ds"
    write_classification(root)
    plants = {}

    def plant(kind, rel):
        plants.setdefault(kind, set()).add(rel)
        return f"{root}/{rel}"

    # format: a PNG and a JPEG written by real encoders, then cut; bytes overwritten; empty; wrong name
    png = plant("truncated", "train/cat/cut.png")
    save(png, picture(9001))
    data = open(png, "rb").read()
    open(png, "wb").write(data[:len(data) // 2])
    jpg = plant("truncated", "train/dog/cut.jpg")
    save(jpg, picture(9002), quality=90)
    data = open(jpg, "rb").read()
    open(jpg, "wb").write(data[:len(data) // 2])
    bad = plant("corrupt", "train/cat/garbled.png")
    save(bad, picture(9003))
    data = bytearray(open(bad, "rb").read())
    data[200:260] = bytes(60)  # inside IDAT: the CRC check fails
    open(bad, "wb").write(bytes(data))
    open(plant("empty_file", "train/dog/empty.png"), "wb").close()
    save(plant("wrong_extension", "train/cat/really_png.jpg"), picture(9004), format="PNG")
    save(plant("too_small", "train/dog/tiny.png"), picture(9005, (8, 8)))
    # quality: blurred, dark, bright, flat, blank, big, wide copies of fresh images
    blurred = Image.fromarray(picture(9006)).filter(ImageFilter.GaussianBlur(4))
    blurred.save(plant("blurry", "train/cat/blurred.png"))
    save(plant("too_dark", "train/dog/dark.png"), (picture(9007) * 0.15).astype(np.uint8))
    save(plant("too_bright", "train/cat/bright.png"), (255 - (255 - picture(9008).astype(np.int64)) * 0.1)
         .astype(np.uint8))
    save(plant("low_contrast", "train/dog/flat.png"), (picture(9009) * 0.08 + 110).astype(np.uint8))
    save(plant("low_information", "train/cat/blank.png"), np.full((64, 64, 3), 128, np.uint8))
    save(plant("size_outlier", "train/dog/huge.png"), picture(9010, (512, 512)))
    save(plant("aspect_outlier", "train/cat/wide.png"), picture(9011, (64, 256)))
    # duplicates across splits: an exact copy and a re-encoded, slightly brightened copy
    shutil.copy(f"{root}/train/cat/0.png", plant("leak_exact", "test/cat/copy.png"))
    plants["leak_exact"].add("train/cat/0.png")
    near = np.clip(np.asarray(Image.open(f"{root}/train/dog/1.png")).astype(np.int64) + 6, 0, 255).astype(np.uint8)
    save(plant("leak_near", "val/dog/near.jpg"), near, quality=92)
    plants["leak_near"].add("train/dog/1.png")
    # balance: a class with 2 training images only (missing from val and test)
    for i in range(2):
        save(f"{root}/train/bird/{i}.png", picture(9100 + i))
    report = trugrade.validate_dataset(root)
    return root, plants, report


FORMAT_KINDS = ("truncated", "corrupt", "empty_file", "wrong_extension", "too_small")
QUALITY_KINDS = ("blurry", "too_dark", "too_bright", "low_contrast", "low_information", "size_outlier",
                 "aspect_outlier")


@pytest.mark.parametrize("kind", FORMAT_KINDS + QUALITY_KINDS)
def test_each_planted_file_problem_is_found_exactly(planted, kind):
    _, plants, report = planted
    assert files_of(report, kind) == plants[kind], report.summary()


def test_damaged_files_are_fatal_with_the_decoder_message(planted):
    _, plants, report = planted
    for kind in ("truncated", "corrupt", "empty_file"):
        (finding,) = report.of_kind(kind)
        assert finding.severity == "fatal" and finding.fix
        for path in plants[kind]:
            assert path in finding.details["messages"]
    assert "truncated" in report.of_kind("truncated")[0].details["messages"]["train/cat/cut.png"]


@pytest.mark.parametrize("kind", ["leak_exact", "leak_near"])
def test_duplicates_across_splits_are_leakage(planted, kind):
    _, plants, report = planted
    (finding,) = report.of_kind(kind)
    assert finding.severity == "warning"
    groups = [{p for p, _ in g} for g in finding.details["groups"]]
    assert any(plants[kind] <= g for g in groups), groups


def test_balance_findings(planted):
    _, _, report = planted
    (missing,) = [f for f in report.of_kind("class_missing_from_split") if f.details["split"] == "val"]
    assert missing.details["classes"] == ["bird"]
    assert report.stats["class_counts"]["train"][report.stats["class_names"].index("bird")] == 2
    (imbalance,) = report.of_kind("imbalance")
    assert report.stats["imbalance_ratio"] > 3


def test_no_other_file_is_flagged(planted):
    _, plants, report = planted
    planted_files = set().union(*plants.values())
    for f in report.findings:
        if f.kind in ("imbalance", "class_missing_from_split"):
            continue
        assert set(f.files) <= planted_files, (f.kind, set(f.files) - planted_files)


def test_json_and_html_reports(planted, tmp_path):
    root, _, report = planted
    report.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"]["fatal"] == 3 and len(data["findings"]) == len(report.findings)
    text = report.to_html(tmp_path / "r.html")
    assert text.count("data:image/png;base64,") >= 10
    assert "<svg" in text and "cannot be decoded" in text and "train/cat/blurred.png" in text
    Image.open(__import__("io").BytesIO(validator_png())).verify()


def validator_png():
    from trugrade.validator_html import png_bytes
    return png_bytes(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))


def test_threads_give_the_same_findings(planted):
    root, _, report = planted
    one = trugrade.validate_dataset(root, threads=1)
    two = trugrade.validate_dataset(root, threads=2)
    assert [f.to_dict() for f in one.findings] == [f.to_dict() for f in two.findings] == \
        [f.to_dict() for f in report.findings]


def test_preflight_refuses_fatal_findings_unless_allowed(planted, capsys):
    root, plants, _ = planted
    with pytest.raises(DatasetError, match="fatal") as info:
        validator.preflight(root)
    assert "train/dog/empty.png" in str(info.value) and "allow=True" in str(info.value)
    findings = validator.preflight(root, allow=True)
    kinds = {f.kind for f in findings}
    assert {"empty_file", "leak_exact", "wrong_extension"} <= kinds
    # the fast preflight reads headers and end markers, not pixels: cut files are found, damaged data
    # behind a valid header and end (the garbled IDAT) and the quality problems pass
    assert "truncated" in kinds and not kinds & {"blurry", "corrupt"}
    (cut,) = [f for f in findings if f.kind == "truncated"]
    assert set(cut.files) == plants["truncated"]
    assert "trugrade preflight" in capsys.readouterr().err


def test_preflight_passes_clean_data(tmp_path):
    write_classification(tmp_path / "ok")
    assert validator.preflight(tmp_path / "ok", stream=None) == []


# --------------------------------------------------------------------------- label errors


def test_confident_learning_finds_mislabelled_samples(planted, tmp_path):
    root, _, report = planted
    ds = trugrade.datasets.scan(root)
    classes = ds.classes
    rng = np.random.default_rng(0)
    n, k = len(ds.samples), len(classes)
    labels = np.array([s["label"] for s in ds.samples])
    probs = rng.dirichlet(np.ones(k), n) * 0.2
    probs[np.arange(n), labels] += 0.8
    wrong = [i for i in range(n) if classes[labels[i]] == "cat"][:3]
    for i in wrong:  # the model is sure these "cat" images are dogs
        probs[i] = 0.02
        probs[i, classes.index("dog")] = 1 - 0.02 * (k - 1)
    np.save(tmp_path / "p.npy", probs)
    result = trugrade.validate_dataset(root, predictions=tmp_path / "p.npy", checks=["label_errors"])
    (finding,) = result.of_kind("likely_label_error")
    assert set(finding.files) == {ds.samples[i]["path"] for i in wrong}
    assert all(s["given"] == "cat" and s["predicted"] == "dog" for s in finding.details["suggestions"])
    joint = np.array(result.stats["confident_joint"])
    assert joint[classes.index("cat"), classes.index("dog")] == 3
    # by path too, and well-predicted data gives no label error
    clean = np.eye(k)[labels] * 0.9 + 0.1 / k
    assert trugrade.validate_dataset(root, predictions=clean, checks=["label_errors"]).findings == []
    with pytest.raises(ValueError, match="predictions must be"):
        trugrade.validate_dataset(root, predictions=np.ones((3, k)), checks=["label_errors"])


def test_confident_learning_thresholds_are_per_class():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[.9, .1], [.8, .2], [.3, .7], [.4, .6], [.45, .55], [.1, .9]])
    issues, joint = validator.confident_learning(labels, probs)
    assert [i for i, _, _ in issues] == [2]  # p1 = .7 >= t1 = (.6+.55+.9)/3; sample 3's .4 < t0 = .667
    assert joint.tolist() == [[2, 1], [0, 1]] or joint.sum() == 5


# --------------------------------------------------------------------------- planted problems: labels


def test_detection_label_problems(tmp_path):
    root = tmp_path / "yolo"
    (root / "labels" / "train").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [car, person, bike]\n")
    for i in range(8):
        save(f"{root}/images/train/{i}.png", picture(200 + i))
        (root / "labels" / "train" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.2 0.3\n")
    (root / "labels" / "train" / "1.txt").write_text("0 0.95 0.5 0.4 0.3\n")        # reaches outside
    (root / "labels" / "train" / "2.txt").write_text("1 0.5 0.5 0.0 0.3\n")         # zero area
    (root / "labels" / "train" / "3.txt").write_text("7 0.5 0.5 0.2 0.2\n")         # class 7 not in names
    (root / "labels" / "train" / "4.txt").unlink()                                   # no annotation file
    report = trugrade.validate_dataset(root)
    assert files_of(report, "box_outside_image") == {"images/train/1.png"}
    assert files_of(report, "box_zero_area") == {"images/train/2.png"}
    assert files_of(report, "label_outside_classes") == {"labels/train/3.txt"}
    assert report.of_kind("label_outside_classes")[0].severity == "fatal"
    assert files_of(report, "not_annotated") == {"images/train/4.png"}
    assert report.of_kind("empty_class")[0].details["classes"] == ["bike"]


def test_coco_annotation_pointing_at_a_missing_image(tmp_path):
    root = tmp_path / "coco"
    images, annotations = [], []
    for i in range(4):
        save(f"{root}/images/{i}.png", picture(300 + i))
        images.append({"id": i, "file_name": f"{i}.png", "width": 64, "height": 64})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [5, 5, 20, 20]})
    images.append({"id": 9, "file_name": "gone.png", "width": 64, "height": 64})
    annotations.append({"id": 9, "image_id": 9, "category_id": 1, "bbox": [5, 5, 20, 20]})
    (root / "annotations.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                       "categories": [{"id": 1, "name": "pet"}]}))
    report = trugrade.validate_dataset(root)
    assert files_of(report, "annotation_missing_image") == {"gone.png"}


def test_segmentation_mask_problems(tmp_path):
    root = tmp_path / "seg"
    for i in range(8):
        save(f"{root}/images/{i}.png", picture(400 + i))
        mask = np.zeros((64, 64), np.uint8)
        mask[8:40, 8:40] = 1 + i % 2
        save(f"{root}/masks/{i}.png", mask)
    save(f"{root}/masks/1.png", np.zeros((32, 64), np.uint8))                # another size
    save(f"{root}/masks/2.png", np.full((64, 64), 7, np.uint8))               # value 7 of 3 classes
    os.remove(f"{root}/masks/3.png")                                           # missing mask
    data = open(f"{root}/masks/4.png", "rb").read()
    open(f"{root}/masks/4.png", "wb").write(data[:len(data) // 2])            # truncated mask
    report = trugrade.validate_dataset(root, num_classes=3)
    assert files_of(report, "mask_size_mismatch") == {"masks/1.png"}
    assert files_of(report, "mask_values_outside_classes") == {"masks/2.png"}
    assert files_of(report, "missing_mask") == {"images/3.png"}
    assert files_of(report, "mask_unreadable") == {"masks/4.png"}
    assert {f.severity for f in report.findings if f.kind.startswith("mask_")} == {"fatal"}
    # header mode (preflight) still sees the wrong size
    fast = validator.preflight(root, allow=True, stream=None, num_classes=3)
    assert any(f.kind == "mask_size_mismatch" for f in fast)


def test_unusable_input_is_one_fatal_finding(tmp_path):
    (tmp_path / "empty").mkdir()
    report = trugrade.validate_dataset(tmp_path / "empty")
    assert [f.kind for f in report.findings] == ["unusable_dataset"]
    with pytest.raises(ValueError, match="unknown check"):
        trugrade.validate_dataset(tmp_path / "empty", checks=["nope"])


def test_near_duplicate_pairs_in_c():
    hashes = np.array([0, 1, 3, 0xFF, -1], dtype=np.int64)
    pairs = np.asarray(trugrade._C.near_duplicate_pairs(hashes, 2)).reshape(-1, 3)
    assert pairs.tolist() == [[0, 1, 1], [0, 2, 2], [1, 2, 1]]
    assert np.asarray(trugrade._C.near_duplicate_pairs(hashes, 64)).reshape(-1, 3).shape[0] == 10


def test_near_duplicate_pairs_match_brute_force_for_any_thread_count():
    rng = np.random.default_rng(3)
    hashes = rng.integers(-2**63, 2**63 - 1, size=301, dtype=np.int64)
    hashes[150:170] = hashes[:20] ^ 0b101  # 2 bits apart
    hashes[299] = hashes[5]                # identical
    u = hashes.view(np.uint64)
    distance = np.array([[bin(int(a ^ b)).count("1") for b in u] for a in u])
    i, j = np.nonzero(np.triu(distance <= 3, 1))
    expected = np.column_stack([i, j, distance[i, j]]).tolist()
    previous = trugrade.get_num_threads()
    try:
        for threads in (1, 2, 3):
            trugrade.set_num_threads(threads)
            pairs = np.asarray(trugrade._C.near_duplicate_pairs(hashes, 3)).reshape(-1, 3)
            assert pairs.tolist() == expected
    finally:
        trugrade.set_num_threads(previous)


def test_measurements_are_bit_identical_for_any_thread_count(tmp_path):
    """Each file is measured on its own, whichever thread takes its batch: the columns are the same bits."""
    paths = []
    for k in range(70):  # several batches of files per thread, mixed sizes, grey and colour, one damaged
        pixels = picture(k, (24 + 7 * (k % 5), 40 + 3 * (k % 7)))
        path = tmp_path / f"{k}.png"
        save(str(path), pixels if k % 3 else pixels[..., 0])
        paths.append(str(path))
    open(paths[33], "wb").write(open(paths[33], "rb").read()[:100])
    previous = trugrade.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            trugrade.set_num_threads(threads)
            c = trugrade._C.validate_images(paths, "decode", 0)
            results.append((c["status"], c["message"], np.asarray(c["ints"]).tobytes(),
                            np.asarray(c["floats"]).tobytes(), np.asarray(c["phash"]).tobytes()))
    finally:
        trugrade.set_num_threads(previous)
    assert results[0] == results[1] == results[2]
    assert results[0][0][33] != "ok" and results[0][0].count("ok") == 69


def test_unreadable_unsupported_mixed_channels_and_empty_class(tmp_path):
    root = tmp_path / "ds"
    write_classification(root, per_split=(6, 2, 2))
    Image.new("CMYK", (64, 64), (10, 200, 30, 0)).save(f"{root}/train/cat/cmyk.jpg", quality=90)
    save(f"{root}/train/dog/grey.png", picture(5000)[..., 0])
    os.makedirs(f"{root}/train/fox")
    ds = trugrade.datasets.scan(root)
    os.remove(f"{root}/train/dog/1.png")  # gone after the scan listed it
    report = trugrade.validate_dataset(ds)
    assert files_of(report, "unreadable") == {"train/dog/1.png"}
    assert report.of_kind("unreadable")[0].severity == "fatal"
    assert files_of(report, "unsupported_mode") == {"train/cat/cmyk.jpg"}
    assert files_of(report, "mixed_channels") == {"train/dog/grey.png"}
    assert files_of(report, "empty_class") == {"train/fox"}


def test_html_report_has_counts_charts_thumbnails_and_file_lists(planted, tmp_path):
    _, _, report = planted
    text = report.to_html(tmp_path / "r.html")
    counts = report.counts()
    for severity, n in counts.items():
        assert f"{severity}: {n}<" in text
    assert text.count("<svg") == sum(1 for v in report.stats["class_counts"].values() if sum(v))
    assert "bird" in text.split("<h2>Findings")[0]  # class names on the bar charts
    for part, finding in zip(text.split("<div class='finding'>")[1:], report.findings):
        if finding.files:
            assert "class='thumbs'" in part and f"{len(finding.files)} file(s)" in part
            assert "data:image/png;base64," in part or "cannot be decoded" in part


def test_fast_mode_finds_cut_files_small_and_large(tmp_path):
    """Header mode reads a small file whole and a large one (over 1 MiB) by its header and its
    last bytes; both ways a PNG or JPEG without its end marker is truncated, an intact one is not."""
    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)  # over 1 MiB as PNG, JPEG
    paths = {}
    for name, pixels, kw in (("big.png", noise, {}), ("big.jpg", noise, {"quality": 100}),
                             ("small.png", picture(1), {}), ("small.jpg", picture(2), {"quality": 90})):
        save(str(tmp_path / name), pixels, **kw)
        cut = tmp_path / ("cut_" + name)
        data = open(tmp_path / name, "rb").read()
        open(cut, "wb").write(data[: len(data) * 3 // 4])
        paths[name], paths["cut_" + name] = str(tmp_path / name), str(cut)
    assert os.path.getsize(paths["big.png"]) > 1 << 20 and os.path.getsize(paths["big.jpg"]) > 1 << 20
    names = sorted(paths)
    c = trugrade._C.validate_images([paths[n] for n in names], "header", 0)
    for name, status, message in zip(names, c["status"], c["message"]):
        if name.startswith("cut_"):
            assert status == "decode" and "truncated" in message and "ends early" in message, (name, message)
        else:
            assert status == "ok", (name, message)
    widths = dict(zip(names, np.asarray(c["ints"]).reshape(-1, 5)[:, 2]))
    assert widths["big.png"] == widths["cut_big.png"] == 900  # the header is still read
