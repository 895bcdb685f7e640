"""Dataset scanning (every layout, built in tmp_path with real PNG/JPEG files), the
manifest round trip, split properties and samplers."""
import collections
import json
import os

import numpy as np
import pytest
from PIL import Image

import trugrade
from trugrade import data as datasets

_counter = [0]


def image(path, size=(8, 6), fmt=None, content=None):
    """Writes a small real image; distinct content unless `content` is given."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if content is None:
        _counter[0] += 1
        content = _counter[0]
    rng = np.random.RandomState(content)
    Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, format=fmt)
    return path


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def notes_of(ds):
    return {n["path"]: n["reason"] for n in ds.notes}


def by_path(ds):
    return {s["path"]: s for s in ds.samples}


# ---- layouts ----

def test_class_folders_with_hidden_non_image_and_empty(tmp_path):
    for c in ("cat", "dog"):
        for i in range(4):
            image(str(tmp_path / c / f"{i}.png"))
    image(str(tmp_path / "dog" / "x.JPG"), fmt="JPEG")
    os.makedirs(tmp_path / "bird")
    write(str(tmp_path / ".DS_Store"), "x")
    write(str(tmp_path / "cat" / "._0.png"), "x")
    write(str(tmp_path / "cat" / "Thumbs.db"), "x")
    image(str(tmp_path / "__MACOSX" / "cat" / "0.png"))
    write(str(tmp_path / "dog" / "notes.txt"), "hello")
    image(str(tmp_path / "dog" / "old.bmp"), fmt="BMP")
    image(str(tmp_path / "stray.png"))
    ds = datasets.scan(tmp_path)
    assert ds.task == "classification" and ds.layout == "class_folders"
    assert ds.classes == ["cat", "dog"]
    assert len(ds) == 9
    assert all(s["label"] == ds.classes.index(s["path"].split("/")[0]) for s in ds.samples)
    assert by_path(ds)["dog/x.JPG"]["size_bytes"] == os.path.getsize(tmp_path / "dog" / "x.JPG")
    notes = notes_of(ds)
    assert "empty class folder" in notes["bird"]
    assert "hidden" in notes[".DS_Store"] and "hidden" in notes["cat/._0.png"] and "hidden" in notes["cat/Thumbs.db"]
    assert "hidden or system folder" in notes["__MACOSX"]
    assert "not an image" in notes["dog/notes.txt"]
    assert "not decoded" in notes["dog/old.bmp"]
    assert "not placed" in notes["stray.png"]
    assert not any(p in by_path(ds) for p in notes)
    assert [s["path"] for s in ds.samples] == sorted(s["path"] for s in ds.samples)


def test_split_folders_are_respected_and_normalised(tmp_path):
    names = {"train": 6, "validation": 2, "testing": 3}
    for split, n in names.items():
        for c in ("NORMAL", "PNEUMONIA"):
            for i in range(n):
                image(str(tmp_path / "chest_xray" / split / c / f"{i}.jpeg"), fmt="JPEG")
    ds = datasets.scan(tmp_path, seed=5)
    assert ds.classes == ["NORMAL", "PNEUMONIA"]
    assert ds.data["split"]["from_folders"] is True
    expect = {"train": "train", "validation": "val", "testing": "test"}
    for s in ds.samples:
        assert s["split"] == expect[s["path"].split("/")[1]]
    assert collections.Counter(s["split"] for s in ds.samples) == {"train": 12, "val": 4, "test": 6}


def test_nested_collections_are_prefixed(tmp_path):
    root = tmp_path / "Dataset"
    for c in ("Fractured", "Non_fractured"):
        for i in range(3):
            image(str(root / "ARM" / "FracAtlas" / "images" / c / f"IMG{i}.jpg"), fmt="JPEG")
    for c in ("Normal", "Osteopenia", "Osteoporosis"):
        for i in range(2):
            image(str(root / "KNEE" / "Osteoarthritis Knee X-ray" / c / f"{i}.png"))
    write(str(root / "ARM" / "FracAtlas" / "dataset.csv"), "image_id,hand,leg,fractured\nIMG0.jpg,1,0,1\n")
    ds = datasets.scan(root)
    assert ds.layout == "collections"
    assert ds.classes == ["ARM/FracAtlas/Fractured", "ARM/FracAtlas/Non_fractured",
                          "KNEE/Osteoarthritis Knee X-ray/Normal", "KNEE/Osteoarthritis Knee X-ray/Osteopenia",
                          "KNEE/Osteoarthritis Knee X-ray/Osteoporosis"]
    s = by_path(ds)["KNEE/Osteoarthritis Knee X-ray/Osteopenia/1.png"]
    assert ds.classes[s["label"]] == "KNEE/Osteoarthritis Knee X-ray/Osteopenia"
    assert len(ds) == 12
    assert "not an image" in notes_of(ds)["ARM/FracAtlas/dataset.csv"]


def test_collections_with_the_same_classes_are_merged(tmp_path):
    for hospital in ("hospital_a", "hospital_b"):
        for c in ("benign", "malignant"):
            for i in range(2):
                image(str(tmp_path / hospital / "scans" / c / f"{i}.png"))
    ds = datasets.scan(tmp_path)
    assert ds.classes == ["benign", "malignant"] and ds.layout == "collections" and len(ds) == 8


def test_csv_with_quotes_header_and_missing_file(tmp_path):
    image(str(tmp_path / "imgs" / "a, first.png"))
    image(str(tmp_path / "imgs" / "b.png"))
    image(str(tmp_path / "imgs" / "c.jpg"), fmt="JPEG")
    image(str(tmp_path / "imgs" / "unlisted.png"))
    write(str(tmp_path / "labels.csv"),
          'file,label\r\n"imgs/a, first.png","sick ""severe"""\r\nimgs/b.png,healthy\r\n'
          './imgs/c.jpg, healthy \r\nimgs/missing.png,sick\r\n"imgs/b.png",sick\r\n\r\n')
    ds = datasets.scan(tmp_path)
    assert ds.layout == "csv" and ds.task == "classification"
    assert ds.classes == ["healthy", 'sick "severe"']
    samples = by_path(ds)
    assert set(samples) == {"imgs/a, first.png", "imgs/b.png", "imgs/c.jpg"}
    assert ds.classes[samples["imgs/a, first.png"]["label"]] == 'sick "severe"'
    assert ds.classes[samples["imgs/c.jpg"]["label"]] == "healthy"
    notes = notes_of(ds)
    assert "labels.csv line 5: listed but missing" in notes["imgs/missing.png"]
    assert "listed again" in notes["imgs/b.png"]
    assert "not placed" in notes["imgs/unlisted.png"]


def test_segmentation_images_and_masks(tmp_path):
    for stem in ("a", "b", "c"):
        image(str(tmp_path / "images" / f"{stem}.jpg"), fmt="JPEG")
    image(str(tmp_path / "masks" / "a.png"))
    image(str(tmp_path / "masks" / "b_mask.png"))
    image(str(tmp_path / "masks" / "orphan.png"))
    ds = datasets.scan(tmp_path)
    assert ds.task == "segmentation" and ds.classes == []
    assert {s["path"]: s["mask"] for s in ds.samples} == {"images/a.jpg": "masks/a.png",
                                                          "images/b.jpg": "masks/b_mask.png"}
    notes = notes_of(ds)
    assert "no mask" in notes["images/c.jpg"] and "without a matching image" in notes["masks/orphan.png"]


def test_coco(tmp_path):
    image(str(tmp_path / "images" / "1.jpg"), size=(100, 50), fmt="JPEG")
    image(str(tmp_path / "images" / "2.jpg"), size=(100, 50), fmt="JPEG")
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 50},
                   {"id": 2, "file_name": "2.jpg", "width": 100, "height": 50},
                   {"id": 3, "file_name": "gone.jpg", "width": 100, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 5, 20, 10]},
                        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 100, 50]}],
        "categories": [{"id": 7, "name": "zebra"}, {"id": 3, "name": "apple"}],
    }
    write(str(tmp_path / "annotations" / "instances_default.json"), json.dumps(coco, indent=1))
    ds = datasets.scan(tmp_path)
    assert ds.task == "detection" and ds.layout == "coco" and ds.classes == ["apple", "zebra"]
    s = by_path(ds)["images/1.jpg"]
    assert s["annotation"] == "annotations/instances_default.json"
    assert s["boxes"] == [[1, 0.1, 0.1, 0.3, 0.3], [0, 0, 0, 1, 1]]
    assert by_path(ds)["images/2.jpg"]["boxes"] == []
    assert "not found" in notes_of(ds)["gone.jpg"]
    coco["annotations"][1]["bbox"] = [0, 0, 1]
    write(str(tmp_path / "annotations" / "instances_default.json"), json.dumps(coco, indent=1))
    with pytest.raises(trugrade.DatasetError, match=r"instances_default.json:\d+:\d+: annotations\[1\]: bbox"):
        datasets.scan(tmp_path)


def test_yolo(tmp_path):
    write(str(tmp_path / "data.yaml"), "path: .\ntrain: images/train\nval: images/val\nnc: 2\n"
                                       "names: ['zebra', 'apple']\n")
    image(str(tmp_path / "images" / "train" / "a.jpg"), fmt="JPEG")
    image(str(tmp_path / "images" / "train" / "b.jpg"), fmt="JPEG")
    image(str(tmp_path / "images" / "val" / "c.png"))
    write(str(tmp_path / "labels" / "train" / "a.txt"), "0 0.5 0.5 0.2 0.4\n1 0.25 0.25 0.5 0.5\n")
    write(str(tmp_path / "labels" / "val" / "c.txt"), "5 0.5 0.5 0.1 0.1\nbad line\n")
    ds = datasets.scan(tmp_path)
    assert ds.layout == "yolo" and ds.classes == ["apple", "zebra"]
    s = by_path(ds)
    assert s["images/train/a.jpg"]["split"] == "train" and s["images/val/c.png"]["split"] == "val"
    assert s["images/train/a.jpg"]["annotation"] == "labels/train/a.txt"
    assert np.allclose(s["images/train/a.jpg"]["boxes"], [[1, 0.4, 0.3, 0.6, 0.7], [0, 0, 0, 0.5, 0.5]])
    assert s["images/train/b.jpg"]["boxes"] == []
    assert s["images/val/c.png"]["boxes"] == []
    reasons = [n["reason"] for n in ds.notes if n["path"] == "labels/val/c.txt"]
    assert any("line 1: class 5 is not in the yaml's names" in r for r in reasons)
    assert any("line 2: expected" in r for r in reasons)


def test_yolo_names_map(tmp_path):
    write(str(tmp_path / "data.yaml"), "names:\n  0: person\n  1: car\n")
    image(str(tmp_path / "images" / "a.jpg"), fmt="JPEG")
    write(str(tmp_path / "labels" / "a.txt"), "0 0.5 0.5 1 1\n")
    ds = datasets.scan(tmp_path)
    assert ds.classes == ["car", "person"] and ds.samples[0]["boxes"] == [[1, 0, 0, 1, 1]]


def test_voc(tmp_path):
    image(str(tmp_path / "JPEGImages" / "000001.jpg"), size=(200, 100), fmt="JPEG")
    image(str(tmp_path / "JPEGImages" / "000002.jpg"), size=(200, 100), fmt="JPEG")
    write(str(tmp_path / "Annotations" / "000001.xml"), """<?xml version="1.0"?>
<!-- a VOC file -->
<annotation verified="yes">
  <folder>VOC2007</folder>
  <filename>000001.jpg</filename>
  <size><width>200</width><height>100</height><depth>3</depth></size>
  <object><name>dog &amp; cat</name><pose>Left</pose><truncated>0</truncated>
    <bndbox><xmin>20</xmin><ymin>10</ymin><xmax>120</xmax><ymax>60</ymax></bndbox></object>
  <object><name>person</name><bndbox><xmin>0</xmin><ymin>0</ymin><xmax>200</xmax><ymax>100</ymax></bndbox></object>
</annotation>""")
    write(str(tmp_path / "Annotations" / "000002.xml"), "<annotation><filename>000002.jpg</filename>"
                                                       "<size><width>200</width></size></annotation>")
    write(str(tmp_path / "Annotations" / "000003.xml"), "<annotation><filename>x.jpg</filename></annot>")
    ds = datasets.scan(tmp_path)
    assert ds.layout == "voc" and ds.classes == ["dog & cat", "person"]
    assert by_path(ds)["JPEGImages/000001.jpg"]["boxes"] == [[0, 0.1, 0.1, 0.6, 0.6], [1, 0, 0, 1, 1]]
    notes = notes_of(ds)
    assert "<size>" in notes["Annotations/000002.xml"]
    assert "expected </annotation>" in notes["Annotations/000003.xml"]
    assert "not placed" in notes["JPEGImages/000002.jpg"]


def test_errors(tmp_path):
    with pytest.raises(trugrade.DatasetError, match="is not a folder"):
        datasets.scan(tmp_path / "nope")
    image(str(tmp_path / "only" / "0.png"))
    with pytest.raises(trugrade.DatasetError, match="no dataset layout recognised"):
        datasets.scan(tmp_path)
    image(str(tmp_path / "other" / "0.png"))
    with pytest.raises(trugrade.TrugradeValueError, match="sum to"):
        datasets.scan(tmp_path, split=(0.5, 0.1, 0.1))
    with pytest.raises(trugrade.TrugradeValueError):
        datasets.scan(tmp_path, seed=-1)


# ---- manifest ----

def test_manifest_round_trip_with_unicode_paths(tmp_path):
    root = tmp_path / "data"
    for c in ("Ärger", "emoji 😀"):
        for name in ('q"uote.png', "back\\slash.png", "tab\tname.png", "é.png"):
            image(str(root / c / name))
    ds = datasets.scan(root, seed=3)
    out = tmp_path / "m.json"
    ds.save(out)
    text = out.read_text(encoding="utf-8")
    assert '"Ärger"' in text and "😀" in text and 'q\\"uote.png' in text and "tab\\tname" in text
    assert json.loads(text) == ds.data
    again = datasets.load_manifest(out)
    assert again.data == ds.data
    assert os.path.exists(os.path.join(again.root, again.samples[0]["path"]))


def test_manifest_errors_name_file_line_and_column(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            image(str(tmp_path / "d" / c / f"{i}.png"))
    ds = datasets.scan(tmp_path / "d")
    path = tmp_path / "m.json"
    ds.save(path)
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"label": 1' in line)
    lines[index] = lines[index].replace('"label": 1', '"label": 9')
    path.write_text("\n".join(lines))
    with pytest.raises(trugrade.DatasetError, match=rf"m.json:{index + 1}:\d+: samples\[\d\]: 9 is out of the range"):
        datasets.load_manifest(path)
    path.write_text(path.read_text()[:-20])
    with pytest.raises(trugrade.DatasetError, match=r"m.json:\d+:\d+: "):
        datasets.load_manifest(path)
    with pytest.raises(trugrade.TrugradeIOError, match="scan"):
        datasets.load_manifest(tmp_path / "missing.json")
    ds.data["samples"][0]["split"] = "holdout"
    with pytest.raises(trugrade.DatasetError, match=r"samples\[0\]: \"holdout\" is not one of train, val, test"):
        ds.save(tmp_path / "bad.json")


def test_scan_is_deterministic_across_thread_counts(tmp_path):
    for c in ("a", "b", "c"):
        for i in range(9):
            image(str(tmp_path / c / f"{i}.png"))
    previous = trugrade.get_num_threads()
    try:
        trugrade.set_num_threads(1)
        one = datasets.scan(tmp_path, seed=11).data
        trugrade.set_num_threads(2)
        two = datasets.scan(tmp_path, seed=11).data
    finally:
        trugrade.set_num_threads(previous)
    assert one == two


# ---- splits ----

def largest_remainder(n, ratios):
    exact = [n * r + 1e-9 for r in ratios]
    counts = [int(np.floor(e)) for e in exact]
    remainders = [e - c for e, c in zip(exact, counts)]
    while sum(counts) < n:
        best = 0
        for s in (1, 2):
            if remainders[s] > remainders[best] + 1e-9:
                best = s
        counts[best] += 1
        remainders[best] = -1
    return counts


def split_counts(ds, label):
    c = collections.Counter(s["split"] for s in ds.samples if s["label"] == label)
    return [c["train"], c["val"], c["test"]]


@pytest.mark.parametrize("ratios", [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.5, 0.0)])
def test_split_is_stratified_with_documented_rounding(tmp_path, ratios):
    sizes = {"big": 40, "mid": 10, "five": 5, "three": 3, "one": 1}
    for c, n in sizes.items():
        for i in range(n):
            image(str(tmp_path / c / f"{i}.png"))
    ds = datasets.scan(tmp_path, split=ratios, seed=0)
    assert ds.data["split"]["ratios"] == list(ratios)
    for c, n in sizes.items():
        assert split_counts(ds, ds.classes.index(c)) == largest_remainder(n, ratios), c
    if ratios == (0.7, 0.15, 0.15):
        assert split_counts(ds, ds.classes.index("mid")) == [7, 2, 1]
        assert split_counts(ds, ds.classes.index("five")) == [3, 1, 1]
        assert split_counts(ds, ds.classes.index("three")) == [2, 1, 0]


def test_split_is_deterministic_and_depends_on_seed(tmp_path):
    for c in ("a", "b"):
        for i in range(30):
            image(str(tmp_path / c / f"{i}.png"))
    def splits(seed):
        return [s["split"] for s in datasets.scan(tmp_path, seed=seed).samples]
    assert splits(1) == splits(1)
    assert splits(1) != splits(2)


def test_duplicates_never_straddle_splits(tmp_path):
    for c in ("a", "b"):
        for i in range(20):
            content = 1000 + i % 6 if c == "a" else None  # 'a' has 6 distinct images, many copies
            image(str(tmp_path / c / f"{i}.png"), content=content)
    image(str(tmp_path / "b" / "copy_of_a.png"), content=1000)  # same bytes, another class
    for seed in range(5):
        ds = datasets.scan(tmp_path, seed=seed)
        by_hash = collections.defaultdict(set)
        for s in ds.samples:
            by_hash[s["content_hash"]].add(s["split"])
        assert all(len(v) == 1 for v in by_hash.values())
        assert "labelled differently" in notes_of(ds)["b/copy_of_a.png"]


def test_folder_split_duplicates_are_reported(tmp_path):
    for split in ("train", "test"):
        for c in ("a", "b"):
            image(str(tmp_path / split / c / "0.png"), content=5 if c == "a" else None)
    ds = datasets.scan(tmp_path)
    assert "different splits" in notes_of(ds)["train/a/0.png"] or "different splits" in notes_of(ds)["test/a/0.png"]


# ---- samplers ----

@pytest.fixture
def imbalanced(tmp_path):
    for c, n in (("Fractured", 4), ("Normal", 20)):
        for i in range(n):
            image(str(tmp_path / c / f"{i}.png"))
    return datasets.scan(tmp_path, split=(1.0, 0.0, 0.0))


def test_shuffled_sampler(imbalanced):
    a = datasets.sampler_indices(imbalanced, "shuffled", seed=3, epoch=0)
    assert a.dtype == np.int64 and sorted(a.tolist()) == list(range(24))
    assert np.array_equal(a, datasets.sampler_indices(imbalanced, "shuffled", seed=3, epoch=0))
    assert not np.array_equal(a, datasets.sampler_indices(imbalanced, "shuffled", seed=3, epoch=1))
    assert not np.array_equal(a, datasets.sampler_indices(imbalanced, "shuffled", seed=4, epoch=0))
    assert datasets.sampler_indices(imbalanced, "sequential").tolist() == list(range(24))


def test_balanced_sampler(imbalanced):
    fractured = imbalanced.classes.index("Fractured")
    a = datasets.sampler_indices(imbalanced, "balanced", seed=0, epoch=2)
    assert len(a) == 24
    assert np.array_equal(a, datasets.sampler_indices(imbalanced, "balanced", seed=0, epoch=2))
    long = datasets.sampler_indices(imbalanced, "balanced", seed=0, epoch=0, length=8000)
    share = np.mean([imbalanced.samples[i]["label"] == fractured for i in long])
    assert 0.46 < share < 0.54


def test_oversampling(imbalanced):
    fractured = imbalanced.classes.index("Fractured")
    a = datasets.sampler_indices(imbalanced, "shuffled", seed=1, epoch=0, oversample={"Fractured": 3})
    counts = collections.Counter(a.tolist())
    assert len(a) == 4 * 3 + 20
    for i, s in enumerate(imbalanced.samples):
        assert counts[i] == (3 if s["label"] == fractured else 1)
    assert np.array_equal(a, datasets.sampler_indices(imbalanced, "shuffled", seed=1, epoch=0,
                                                      oversample={"Fractured": 3}))
    with pytest.raises(trugrade.DatasetError, match="not in the manifest"):
        datasets.sampler_indices(imbalanced, "shuffled", oversample={"Broken": 2})
    with pytest.raises(trugrade.TrugradeValueError, match="balanced sampler already"):
        datasets.sampler_indices(imbalanced, "balanced", oversample={"Fractured": 2})


def test_sampler_uses_the_split(tmp_path):
    for c in ("a", "b"):
        for i in range(10):
            image(str(tmp_path / c / f"{i}.png"))
    ds = datasets.scan(tmp_path)
    val = datasets.sampler_indices(ds, "shuffled", split="val")
    assert sorted(val.tolist()) == [i for i, s in enumerate(ds.samples) if s["split"] == "val"]
    with pytest.raises(trugrade.TrugradeValueError, match="kind"):
        datasets.sampler_indices(ds, "random")


def test_scan_probes_sizes_and_notes_unreadable_headers(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            image(str(tmp_path / c / f"{i}.png"), size=(10 + i, 7))
    image(str(tmp_path / "a" / "gray.jpg"), fmt="JPEG")
    write(str(tmp_path / "b" / "broken.png"), "not a png at all")
    ds = datasets.scan(tmp_path)
    samples = by_path(ds)
    assert "b/broken.png" not in samples
    assert "header cannot be read" in notes_of(ds)["b/broken.png"]
    assert (samples["a/2.png"]["width"], samples["a/2.png"]["height"], samples["a/2.png"]["channels"]) == (12, 7, 3)
    assert all(s["width"] > 0 and s["height"] > 0 and s["channels"] > 0 for s in ds.samples)
    assert trugrade.datasets.scan is trugrade.data.scan


def test_scan_notes_masks_of_another_size(tmp_path):
    os.makedirs(tmp_path / "masks")
    for i in range(3):
        image(str(tmp_path / "images" / f"{i}.png"), size=(8, 6))
        Image.fromarray(np.zeros((6, 8 if i else 9), np.uint8)).save(tmp_path / "masks" / f"{i}.png")
    ds = datasets.scan(tmp_path)
    # the sample stays (the validator measures its mask) and the note names the mask and both sizes
    assert [s["path"] for s in ds.samples] == ["images/0.png", "images/1.png", "images/2.png"]
    assert "9 x 6" in notes_of(ds)["masks/0.png"] and "8 x 6" in notes_of(ds)["masks/0.png"]
