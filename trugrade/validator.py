"""The dataset validator: what is wrong with a dataset before (and after) training on it.

    report = trugrade.validate_dataset("xrays/")          # a folder, a manifest file or a Dataset
    for f in report.findings: print(f.severity, f.message, f.fix, f.files[:3])
    report.to_json("report.json"); report.to_html("report.html")
    trugrade.validator.preflight("xrays/")                # fast checks; DatasetError on fatal ones

Checks (each finding has a check, a kind, a severity, the files and a plain-language fix):
  format      unreadable, zero-byte, truncated, corrupt files, unsupported modes, wrong
              extensions, images too small, mixed channel counts;
  labels      labels outside the class list, empty classes, annotations pointing at missing
              images, images without an annotation file, boxes outside the image or of zero
              area, masks missing, of another size than their image or with values outside
              the classes, and what the scan skipped (its notes);
  balance     counts per class and split, imbalance ratio, classes missing from a split;
  quality     blur (variance of the Laplacian), too dark / too bright, low contrast or low
              information, outliers in size and aspect ratio;
  duplicates  exact (content hash) and near (64-bit DCT pHash within a Hamming distance),
              above all across splits (leakage);
  label_errors  with `predictions` (out-of-sample probabilities of a trained model, one row
              per manifest sample): confident learning (Northcutt et al., 2021) lists the
              samples whose given label the model contradicts with high confidence.
The files are read and measured in C (csrc/data/validate.c, in parallel); the judgements here
are relative to the dataset itself where a fixed threshold would not fit every kind of image
(blur and exposure are compared with the dataset's median), with the thresholds in
DEFAULT_THRESHOLDS. Severity "fatal" means training cannot use the data as it is; preflight
refuses those. Not here: fixing anything (the findings say how).
"""
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import _C
from .datasets import SPLITS, Dataset, load_manifest, scan
from .errors import DatasetError, TrugradeValueError
from .tensor import get_num_threads, set_num_threads

__all__ = ["DEFAULT_THRESHOLDS", "Finding", "Report", "SEVERITIES", "confident_learning", "model_probabilities",
           "preflight", "run_label_issues", "validate_dataset"]

SEVERITIES = ("fatal", "warning", "info")
CHECKS = ("format", "labels", "balance", "quality", "duplicates", "label_errors")
FAST_CHECKS = ("format", "labels", "balance", "duplicates")
MANIFEST_NAME = "manifest.json"
DATASET_INFO_NAME = "dataset.json"

DEFAULT_THRESHOLDS = {
    "min_size": 16,             # images narrower or lower than this many pixels are too small
    "blur_fraction": 0.1,       # blurry: Laplacian variance below this fraction of the dataset's median
    "dark_fraction": 0.3,       # too dark: mean brightness below this fraction of the median ...
    "dark_level": 50.0,         # ... and below this level (0..255)
    "bright_fraction": 0.3,     # too bright: (255 - mean) below this fraction of the median's ...
    "bright_level": 205.0,      # ... and mean above this level
    "contrast_fraction": 0.25,  # low contrast: standard deviation below this fraction of the median ...
    "contrast_level": 16.0,     # ... and below this (0..255)
    "min_entropy": 1.0,         # low information: histogram entropy below this many bits
    "size_ratio": 4.0,          # size outlier: area this many times above or below the median
    "aspect_ratio": 2.0,        # aspect outlier: width/height this many times off the median's
    "min_images_relative": 8,   # relative checks (blur, exposure, contrast, outliers) need this many images
    "near_duplicate_bits": 4,   # near duplicates: pHashes at most this many bits apart
    "imbalance_warning": 10.0,  # largest / smallest class count above this: warning (above 3: info)
    "imbalance_info": 3.0,
    "box_tolerance": 0.01,      # boxes may pass the image border by this fraction before being flagged
}


@dataclass
class Finding:
    """One problem: `check` (format, labels, ...), `kind` (corrupt, blurry, leak_exact, ...),
    `severity` (fatal, warning, info), a message and a fix in plain words, the files involved
    (relative to the dataset root) and details (per-file messages, duplicate groups, ...)."""
    check: str
    kind: str
    severity: str
    message: str
    fix: str
    files: list = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_dict(self):
        return {"check": self.check, "kind": self.kind, "severity": self.severity, "message": self.message,
                "fix": self.fix, "files": list(self.files), "details": self.details}

    def __str__(self):
        shown = ", ".join(self.files[:3]) + (f" (+{len(self.files) - 3} more)" if len(self.files) > 3 else "")
        return f"[{self.severity}] {self.check}/{self.kind}: {self.message}" + (f" [{shown}]" if shown else "") + \
               f"\n    fix: {self.fix}"


class Report:
    """The findings of one validation, with the dataset's counts (`stats`)."""

    def __init__(self, root, task, classes, findings, stats):
        self.root, self.task, self.classes = root, task, classes
        self.findings = sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), CHECKS.index(f.check)))
        self.stats = stats

    @property
    def fatal(self):
        return [f for f in self.findings if f.severity == "fatal"]

    def of_kind(self, kind):
        return [f for f in self.findings if f.kind == kind]

    def kinds(self):
        return {f.kind for f in self.findings}

    def counts(self):
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_dict(self):
        return {"root": self.root, "task": self.task, "classes": self.classes, "summary": self.counts(),
                "stats": self.stats, "findings": [f.to_dict() for f in self.findings]}

    def to_json(self, path=None):
        """The report as JSON text; also written to `path` when given."""
        text = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as out:
                out.write(text + "\n")
        return text

    def to_html(self, path=None, thumbnails=8):
        """A self-contained HTML page (inline SVG charts and PNG thumbnails); written to `path` when given."""
        from .validator_html import render
        text = render(self, thumbnails=thumbnails)
        if path is not None:
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
        return text

    def summary(self):
        c = self.counts()
        n = self.stats.get("n_samples", 0)
        head = (f"{self.root}: {n} samples, {c['fatal']} fatal, {c['warning']} warnings, {c['info']} notes")
        return "\n".join([head] + [str(f) for f in self.findings])

    def __iter__(self):
        return iter(self.findings)

    def __len__(self):
        return len(self.findings)

    def __repr__(self):
        return f"trugrade.validator.Report({self.root!r}, {self.counts()})"


# --------------------------------------------------------------------------- loading the dataset


def _read_info(folder):
    path = os.path.join(folder, DATASET_INFO_NAME)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def resolve(source):
    """(Dataset, info dict, fatal Finding or None) from a folder, a manifest file, a created
    dataset folder (with manifest.json and dataset.json), a Dataset or a manifest dict."""
    if isinstance(source, Dataset):
        return source, {}, None
    if isinstance(source, dict):
        return Dataset(source), {}, None
    path = os.fspath(source)
    try:
        if os.path.isfile(path):
            return load_manifest(path), _read_info(os.path.dirname(os.path.abspath(path))), None
        if os.path.isfile(os.path.join(path, MANIFEST_NAME)):
            return load_manifest(os.path.join(path, MANIFEST_NAME)), _read_info(path), None
        if not os.path.isdir(path):
            raise DatasetError(f"validate: {path} is neither a dataset folder nor a manifest file")
        return scan(path), {}, None
    except DatasetError as exc:
        finding = Finding("format", "unusable_dataset", "fatal", str(exc),
                          "Fix what the message names (layout, manifest field) and validate again.", [path])
        return None, {}, finding


# --------------------------------------------------------------------------- format


def _failure_kind(status, message, size_bytes):
    text = message.lower()
    if size_bytes == 0:
        return "empty_file"
    if status == "io":
        return "unreadable"
    if status == "nomem" or "pixels" in text and "limit" in text:
        return "too_large"
    if "truncated" in text and ("ends early" in text or "premature" in text or "end of file" in text):
        return "truncated"
    if status == "unsupported" or "not supported" in text or "unsupported" in text or "refused" in text:
        return "unsupported_mode"
    return "corrupt"


FAILURE_TEXT = {
    "empty_file": ("{n} file(s) are empty (0 bytes)",
                   "Copy these files again from their source or delete them; an empty file holds no image."),
    "unreadable": ("{n} file(s) cannot be opened",
                   "Check that the files exist and that their permissions let you read them."),
    "too_large": ("{n} image(s) are larger than the decoder's pixel limit",
                  "Downscale these images (or raise max_pixels if they are genuine)."),
    "truncated": ("{n} file(s) end early (truncated, e.g. an interrupted download or copy)",
                  "Copy or download these files again; the end of their data is missing."),
    "unsupported_mode": ("{n} file(s) use a mode the decoder does not support",
                         "Convert these files to 8- or 16-bit PNG (e.g. CMYK JPEG to RGB, compressed DICOM to "
                         "uncompressed)."),
    "corrupt": ("{n} file(s) are corrupt and cannot be decoded",
                "Replace these files with intact copies, or delete them from the dataset."),
}


class _Measure:
    """The C measurements of every sample image (and mask), by sample index."""

    def __init__(self, ds, mode, max_pixels):
        prefix = os.path.join(ds.root, "")
        self.paths = [s["path"] for s in ds.samples]
        columns = _C.validate_images([prefix + p for p in self.paths], mode, max_pixels or 0)
        self.status = columns["status"]
        self.message = columns["message"]
        self.format = columns["format"]
        ints = np.asarray(columns["ints"]).reshape(-1, 5)
        self.size_bytes, self.ext_mismatch, self.width, self.height, self.channels = ints.T
        floats = np.asarray(columns["floats"]).reshape(-1, 6).astype(np.float64)
        self.lapvar, self.mean, self.std, self.dark, self.bright, self.entropy = floats.T
        self.phash = np.asarray(columns["phash"])
        self.ok = np.asarray(self.status) == "ok"
        self.decoded = mode == "decode"
        self.masks = None
        if ds.task == "segmentation":
            mask_paths = [prefix + (s.get("mask") or "") for s in ds.samples]
            if mode == "decode":
                m = _C.validate_masks(mask_paths, max_pixels or 0)
                ints = np.asarray(m["ints"]).reshape(-1, 5)
                self.masks = {"status": m["status"], "message": m["message"], "width": ints[:, 0],
                              "height": ints[:, 1], "max_value": ints[:, 3], "above": ints[:, 4],
                              "histogram": np.asarray(m["histogram"]).reshape(-1, 256)}
            else:
                m = _C.validate_images(mask_paths, "header", max_pixels or 0)
                ints = np.asarray(m["ints"]).reshape(-1, 5)
                self.masks = {"status": m["status"], "message": m["message"], "width": ints[:, 2],
                              "height": ints[:, 3], "max_value": None, "above": None, "histogram": None}


def _header_failures(ds):
    """(path, kind, message) of the files the scan skipped because their header cannot be read."""
    failed = []
    for note in ds.notes:
        if "header cannot be read" in note["reason"]:
            try:
                size = os.path.getsize(os.path.join(ds.root, note["path"]))
            except OSError:
                size = -1
            status = "io" if size < 0 else "decode"
            failed.append((note["path"], _failure_kind(status, note["reason"], size), note["reason"]))
    return failed


def _check_format(ds, m, t, out):
    failures = {}
    for i, status in enumerate(m.status if m is not None else ()):
        if status != "ok":
            kind = _failure_kind(status, m.message[i], int(m.size_bytes[i]))
            failures.setdefault(kind, []).append((m.paths[i], m.message[i]))
    for path, kind, message in _header_failures(ds):
        failures.setdefault(kind, []).append((path, message))
    for kind, rows in failures.items():
        text, fix = FAILURE_TEXT[kind]
        out.append(Finding("format", kind, "fatal", text.format(n=len(rows)), fix, [p for p, _ in rows],
                           {"messages": dict(rows)}))
    if m is None:
        return
    wrong = np.flatnonzero((m.ext_mismatch != 0) & m.ok)
    if len(wrong):
        out.append(Finding("format", "wrong_extension", "warning",
                           f"{len(wrong)} file(s) have an extension that names another format than their content",
                           "Rename these files to the extension of their real format (shown per file) so other "
                           "tools read them too.", [m.paths[i] for i in wrong],
                           {"formats": {m.paths[i]: m.format[i] for i in wrong}}))
    small = np.flatnonzero(m.ok & (np.minimum(m.width, m.height) < t["min_size"]))
    if len(small):
        out.append(Finding("format", "too_small", "warning",
                           f"{len(small)} image(s) are smaller than {t['min_size']} pixels on a side",
                           "Remove these images or replace them with full-size versions; thumbnails this small "
                           "hold too little detail to learn from.", [m.paths[i] for i in small],
                           {"sizes": {m.paths[i]: [int(m.width[i]), int(m.height[i])] for i in small}}))
    channels = m.channels[m.ok]
    if len(channels):
        values, counts = np.unique(channels, return_counts=True)
        if len(values) > 1:
            usual = int(values[np.argmax(counts)])
            odd = np.flatnonzero(m.ok & (m.channels != usual))
            out.append(Finding("format", "mixed_channels", "warning",
                               f"{len(odd)} image(s) have another channel count than the usual {usual} "
                               f"(counts: {dict(zip(map(int, values), map(int, counts)))})",
                               f"Convert these images to {usual} channel(s) (e.g. grey to RGB, RGBA to RGB) or "
                               f"check that they belong to this dataset.", [m.paths[i] for i in odd],
                               {"channels": {m.paths[i]: int(m.channels[i]) for i in odd}}))


# --------------------------------------------------------------------------- labels


NOTE_RULES = (  # (words in the scan's reason, kind, severity, fix); kind None: left to another check
    ("same content as", None, None, None),
    ("header cannot be read", None, None, None),
    ("mask problem (sample kept", None, None, None),
    ("not in the yaml's names", "label_outside_classes", "fatal",
     "Add the class to the names of the yaml, or correct the class id on that line."),
    ("not found beside it", "annotation_missing_image", "warning",
     "Add the missing image, or remove its entry from the annotation file."),
    ("listed but missing", "annotation_missing_image", "warning",
     "Add the missing image, or remove its row from the CSV."),
    ("is not in", "annotation_missing_image", "warning",
     "Put the annotated image in the image folder, or delete the annotation file."),
    ("no mask named", "missing_mask", "warning",
     "Add the mask of this image (same name in masks/), or move the image out of images/."),
    ("mask without a matching image", "orphan_mask", "info",
     "Add the image of this mask, or delete the mask."),
    ("empty class folder", "empty_class", "warning",
     "Put images in this class folder, or delete the folder."),
    ("not decoded by trugrade", "unsupported_format", "warning",
     "Convert these images to PNG (or JPEG) so they are part of the dataset."),
    ("image not placed by the", "not_annotated", "warning",
     "Annotate these images (or add an empty annotation for background images), or move them out."),
    ("line skipped", "bad_annotation", "fatal", "Correct the line of the annotation file named in the message."),
    ("object skipped", "bad_annotation", "fatal", "Correct the object of the annotation file named in the message."),
    ("file skipped", "bad_annotation", "fatal", "Correct the annotation file named in the message."),
    ("row skipped", "bad_annotation", "warning", "Correct the CSV row named in the message."),
)


def _check_notes(ds, out):
    groups = {}
    for note in ds.notes:
        reason = note["reason"]
        for words, kind, severity, fix in NOTE_RULES:
            if words in reason:
                break
        else:
            kind, severity, fix = "scan_note", "info", "Nothing is wrong with training; the scan skipped this entry."
        if kind is None:
            continue
        if kind == "not_annotated" and ds.task == "classification":
            kind, severity = "not_placed", "info"
            fix = "Move the image into a class folder (or the CSV) if it belongs to the dataset."
        groups.setdefault((kind, severity, fix), []).append(note)
    texts = {"label_outside_classes": "annotation line(s) name a class outside the class list",
             "annotation_missing_image": "annotation(s) point at images that do not exist",
             "missing_mask": "image(s) have no mask (annotation coverage)",
             "orphan_mask": "mask(s) have no image",
             "empty_class": "class folder(s) hold no images (empty classes)",
             "unsupported_format": "image(s) are in a format trugrade does not decode",
             "not_annotated": "image(s) have no annotation file (annotation coverage)",
             "not_placed": "image(s) are outside the dataset's layout",
             "bad_annotation": "annotation(s) could not be read and were skipped",
             "scan_note": "entries were skipped by the scan"}
    for (kind, severity, fix), notes in groups.items():
        out.append(Finding("labels" if kind not in ("unsupported_format", "scan_note") else "format", kind, severity,
                           f"{len(notes)} {texts[kind]}", fix, [n["path"] for n in notes],
                           {"reasons": {n["path"]: n["reason"] for n in notes}}))


def _num_classes(ds, info, num_classes):
    if num_classes is not None:
        return int(num_classes)
    if info.get("num_classes"):
        return int(info["num_classes"])
    if ds.classes:
        return len(ds.classes) + (1 if ds.task == "segmentation" and info.get("background", True) else 0)
    return None


def _check_labels(ds, m, t, n_classes, out, info=None):
    samples = ds.samples
    if ds.task == "classification":
        k = len(ds.classes)
        bad = [s["path"] for s in samples if not 0 <= s["label"] < k]
        if bad:
            out.append(Finding("labels", "label_outside_classes", "fatal",
                               f"{len(bad)} sample(s) have a label outside the {len(ds.classes)} classes",
                               "Correct the labels in the manifest or move the images into a class folder.", bad))
        task_classes = (info or {}).get("task_classes")
        outside = [c for c in ds.classes if task_classes and c not in task_classes]
        if outside:
            names = set(outside)
            files = [s["path"] for s in samples
                     if 0 <= s["label"] < len(ds.classes) and ds.classes[s["label"]] in names]
            out.append(Finding("labels", "label_outside_classes", "fatal",
                               f"{len(files)} sample(s) are labelled {', '.join(outside[:10])}: outside the class list "
                               f"of the task {info.get('category')}/{info.get('task')} ({', '.join(task_classes)})",
                               "Relabel these samples (rename their class folder or CSV label) to one of the task's "
                               "classes, or create the dataset with the experimental task for free-form classes.",
                               files, {"classes": outside, "task_classes": list(task_classes)}))
    if ds.task == "detection":
        _check_boxes(ds, t, out)
    if ds.task == "segmentation" and m is not None and m.masks is not None:
        _check_masks(ds, m, n_classes, out)


def _check_boxes(ds, t, out):
    tol = t["box_tolerance"]
    outside, zero, bad_label, uncovered = [], [], [], []
    details = {}
    exists = {}
    for s in ds.samples:
        annotation = s.get("annotation") or ""
        if annotation not in exists:  # NOTE: the YOLO scan names the label file an image should have
            exists[annotation] = bool(annotation) and os.path.isfile(os.path.join(ds.root, annotation))
        if not exists[annotation]:
            uncovered.append(s["path"])
        for box in s.get("boxes", []):
            label, x0, y0, x1, y1 = box
            if not 0 <= label < len(ds.classes):
                bad_label.append(s["path"])
            if x1 - x0 <= 0 or y1 - y0 <= 0:
                zero.append(s["path"])
                details.setdefault(s["path"], []).append(box)
            elif x0 < -tol or y0 < -tol or x1 > 1 + tol or y1 > 1 + tol:
                outside.append(s["path"])
                details.setdefault(s["path"], []).append(box)
    unique = lambda xs: list(dict.fromkeys(xs))  # noqa: E731
    if bad_label:
        out.append(Finding("labels", "label_outside_classes", "fatal",
                           f"{len(unique(bad_label))} image(s) have boxes of a class outside the class list",
                           "Correct the class of these boxes or add the class to the class list.", unique(bad_label)))
    if outside:
        out.append(Finding("labels", "box_outside_image", "warning",
                           f"{len(unique(outside))} image(s) have boxes that reach outside the image",
                           "Clip these boxes to the image, or check the coordinate convention (pixels versus "
                           "fractions, corners versus centre) of their annotation.", unique(outside),
                           {"boxes": {p: details[p] for p in unique(outside)}}))
    if zero:
        out.append(Finding("labels", "box_zero_area", "warning",
                           f"{len(unique(zero))} image(s) have boxes of zero or negative area",
                           "Delete these boxes or correct their corners (x_max must exceed x_min, y_max y_min).",
                           unique(zero), {"boxes": {p: details[p] for p in unique(zero)}}))
    if uncovered:
        out.append(Finding("labels", "not_annotated", "warning",
                           f"{len(uncovered)} image(s) of the detection set have no annotation file "
                           f"(annotation coverage {1 - len(uncovered) / max(1, len(ds.samples)):.0%})",
                           "Annotate these images; for a true background image add an empty label file so its "
                           "absence is deliberate.", uncovered))
    counts = np.zeros(len(ds.classes), dtype=np.int64)
    for s in ds.samples:
        for box in s.get("boxes", []):
            if 0 <= box[0] < len(ds.classes):
                counts[box[0]] += 1
    empty = [ds.classes[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        out.append(Finding("labels", "empty_class", "warning", f"{len(empty)} class(es) have no boxes: "
                           f"{', '.join(empty[:10])}", "Annotate examples of these classes or remove them from "
                           "the class list.", [], {"classes": empty}))


def _check_masks(ds, m, n_classes, out):
    masks = m.masks
    broken, wrong_size, wrong_values = [], [], []
    for i, s in enumerate(ds.samples):
        if masks["status"][i] != "ok":
            broken.append(i)
            continue
        if m.ok[i] and (masks["width"][i] != m.width[i] or masks["height"][i] != m.height[i]):
            wrong_size.append(i)
        if masks["max_value"] is not None and n_classes is not None and \
                (masks["max_value"][i] >= n_classes or masks["above"][i] > 0):
            wrong_values.append(i)
    mask_of = lambda i: ds.samples[i]["mask"]  # noqa: E731
    if broken:
        out.append(Finding("labels", "mask_unreadable", "fatal", f"{len(broken)} mask(s) cannot be decoded",
                           "Replace these masks with intact PNG files of class indices.",
                           [mask_of(i) for i in broken], {"messages": {mask_of(i): masks["message"][i]
                                                                       for i in broken}}))
    if wrong_size:
        out.append(Finding("labels", "mask_size_mismatch", "fatal",
                           f"{len(wrong_size)} mask(s) differ in size from their image",
                           "Make each mask exactly its image's width x height (resize it with nearest "
                           "neighbour, never bilinear, so class indices stay whole).",
                           [mask_of(i) for i in wrong_size],
                           {"sizes": {mask_of(i): {"mask": [int(masks["width"][i]), int(masks["height"][i])],
                                                   "image": [int(m.width[i]), int(m.height[i])]}
                                      for i in wrong_size}}))
    if wrong_values:
        out.append(Finding("labels", "mask_values_outside_classes", "fatal",
                           f"{len(wrong_values)} mask(s) hold values outside the {n_classes} classes "
                           f"(0..{n_classes - 1})",
                           "Map the mask values to class indices 0..num_classes-1 (a 0/255 mask is 0/1; an "
                           "ignore value must be declared to training).", [mask_of(i) for i in wrong_values],
                           {"max_values": {mask_of(i): int(masks["max_value"][i]) for i in wrong_values}}))


# --------------------------------------------------------------------------- class balance


def _class_counts(ds, m, n_classes):
    """{split: [count per class]} and the unit counted (images, boxes or pixels); None if not countable."""
    if ds.task == "classification":
        names, unit = ds.classes, "images"
        labels = np.fromiter((s["label"] for s in ds.samples), np.int64, len(ds.samples))
        split_of = {sp: k for k, sp in enumerate(SPLITS)}
        splits = np.fromiter((split_of[s["split"]] for s in ds.samples), np.int64, len(ds.samples))
        inside = (labels >= 0) & (labels < len(names))
        table = np.zeros((len(SPLITS), len(names)), dtype=np.int64)
        np.add.at(table, (splits[inside], labels[inside]), 1)
        counts = {sp: table[k] for sp, k in split_of.items()}
    elif ds.task == "detection":
        names, unit = ds.classes, "boxes"
        counts = {sp: np.zeros(len(names), dtype=np.int64) for sp in SPLITS}
        for s in ds.samples:
            for box in s.get("boxes", []):
                if 0 <= box[0] < len(names):
                    counts[s["split"]][box[0]] += 1
    else:
        if m is None or m.masks is None or m.masks["histogram"] is None:
            return None
        hist = m.masks["histogram"]
        n = n_classes or int(max(1, (np.flatnonzero(hist.sum(0)).max(initial=0) + 1)))
        n = min(n, 256)
        names = ds.classes if len(ds.classes) == n else [str(c) for c in range(n)]
        unit = "pixels"
        counts = {sp: np.zeros(n, dtype=np.int64) for sp in SPLITS}
        for i, s in enumerate(ds.samples):
            if m.masks["status"][i] == "ok":
                counts[s["split"]] += hist[i, :n]
    return names, unit, counts


def _check_balance(ds, m, t, n_classes, out, stats):
    counted = _class_counts(ds, m, n_classes)
    if counted is None:
        return
    names, unit, counts = counted
    stats["class_names"] = list(names)
    stats["class_unit"] = unit
    stats["class_counts"] = {sp: [int(v) for v in counts[sp]] for sp in SPLITS}
    total = sum(counts.values())
    if len(names) == 0:
        return
    present = total[total > 0]
    if len(present) >= 2:
        ratio = float(present.max() / present.min())
        stats["imbalance_ratio"] = ratio
        if ratio > t["imbalance_info"]:
            big, small = names[int(np.argmax(total))], names[int(np.argmin(np.where(total > 0, total, 1 << 62)))]
            severity = "warning" if ratio > t["imbalance_warning"] else "info"
            out.append(Finding("balance", "imbalance", severity,
                               f"classes are imbalanced: the largest ({big}, {int(total.max())} {unit}) has "
                               f"{ratio:.1f}x the smallest ({small}, {int(present.min())} {unit})",
                               "Collect more of the small classes, or train with class weights "
                               "(train.class_weights: auto) or the balanced sampler (data.sampler: balanced).",
                               [], {"counts": {names[c]: int(total[c]) for c in range(len(names))}}))
    if ds.task == "classification":
        empty = [names[c] for c in np.flatnonzero(total == 0)]
        if empty:
            out.append(Finding("labels", "empty_class", "warning", f"{len(empty)} class(es) have no images: "
                               f"{', '.join(empty[:10])}", "Add images of these classes or remove them.", [],
                               {"classes": empty}))
    used = [sp for sp in SPLITS if counts[sp].sum() > 0]
    for sp in used:
        missing = [names[c] for c in np.flatnonzero((counts[sp] == 0) & (total > 0))]
        if missing:
            out.append(Finding("balance", "class_missing_from_split", "warning",
                               f"{len(missing)} class(es) have no {unit} in the {sp} split: {', '.join(missing[:10])}",
                               f"Re-split so every class appears in {sp} (stratified splits do this when a class has "
                               f"at least 3 images), or collect more of these classes.", [],
                               {"split": sp, "classes": missing}))


# --------------------------------------------------------------------------- image quality


def _check_quality(ds, m, t, out):
    # images flagged as too small are left out: measurements of a few pixels mean little
    ok = np.flatnonzero(m.ok & (np.minimum(m.width, m.height) >= t["min_size"]))
    if not m.decoded or len(ok) < t["min_images_relative"]:
        return
    paths = m.paths

    def add(kind, rows, message, fix, values):
        if len(rows):
            out.append(Finding("quality", kind, "warning", message.format(n=len(rows)), fix,
                               [paths[i] for i in rows], {"values": {paths[i]: round(float(values[i]), 3)
                                                                     for i in rows}}))

    # NOTE: the Laplacian's variance grows with the square of the contrast, so a dark or flat copy
    # of a sharp image would look blurred; sharpness is judged on it divided by the image's variance.
    textured = ok[m.std[ok] >= 2.0]
    sharpness = m.lapvar / np.maximum(m.std, 1e-6) ** 2
    if len(textured):
        median_sharpness = np.median(sharpness[textured])
        blurry = textured[sharpness[textured] < t["blur_fraction"] * median_sharpness]
        add("blurry", blurry, "{n} image(s) are blurry (variance of the Laplacian, relative to the image's "
            f"contrast, under {t['blur_fraction']:g}x the dataset's median)",
            "Check these images for focus or motion blur; retake or remove those too blurred to show the label.",
            m.lapvar)
    mean = np.median(m.mean[ok])
    dark = ok[(m.mean[ok] < t["dark_fraction"] * mean) & (m.mean[ok] < t["dark_level"])]
    add("too_dark", dark, "{n} image(s) are too dark (mean brightness far below the dataset's median "
        f"{mean:.0f}/255)", "Check the exposure of these images; brighten or retake them, or remove them.", m.mean)
    headroom = 255.0 - mean
    bright = ok[(255.0 - m.mean[ok] < t["bright_fraction"] * headroom) & (m.mean[ok] > t["bright_level"])]
    add("too_bright", bright, "{n} image(s) are too bright (washed out; mean brightness far above the dataset's "
        f"median {mean:.0f}/255)", "Check these images for overexposure; retake or remove them.", m.mean)
    std = np.median(m.std[ok])
    low_info = ok[m.entropy[ok] < t["min_entropy"]]
    exposed = np.isin(ok, np.concatenate([dark, bright]))  # their low contrast follows from the exposure reported
    low_contrast = ok[(m.std[ok] < t["contrast_fraction"] * std) & (m.std[ok] < t["contrast_level"])
                      & (m.entropy[ok] >= t["min_entropy"]) & ~exposed]
    add("low_contrast", low_contrast, "{n} image(s) have low contrast (standard deviation far below the dataset's "
        f"median {std:.1f})", "Check these images; stretch their contrast or remove them if they show nothing.",
        m.std)
    add("low_information", low_info, "{n} image(s) carry almost no information (nearly one colour; entropy under "
        f"{t['min_entropy']:g} bit)", "Remove these images (blank frames, placeholders, failed captures).",
        m.entropy)
    area = (m.width * m.height).astype(np.float64)
    median_area = np.median(area[ok])
    size_odd = ok[(area[ok] > t["size_ratio"] * median_area) | (area[ok] * t["size_ratio"] < median_area)]
    if len(size_odd):
        out.append(Finding("quality", "size_outlier", "info",
                           f"{len(size_odd)} image(s) are much larger or smaller than most (median "
                           f"{int(np.median(m.width[ok]))}x{int(np.median(m.height[ok]))})",
                           "Check that these images belong to the dataset; resizing them to the common size "
                           "changes their scale.", [paths[i] for i in size_odd],
                           {"sizes": {paths[i]: [int(m.width[i]), int(m.height[i])] for i in size_odd}}))
    aspect = m.width.astype(np.float64) / np.maximum(m.height, 1)
    median_aspect = np.median(aspect[ok])
    aspect_odd = ok[np.abs(np.log(aspect[ok] / median_aspect)) > math.log(t["aspect_ratio"])]
    if len(aspect_odd):
        out.append(Finding("quality", "aspect_outlier", "info",
                           f"{len(aspect_odd)} image(s) have an unusual aspect ratio (median {median_aspect:.2f})",
                           "Check these images (rotated, panoramas, crops); resizing squashes them, letterboxing "
                           "keeps their shape.", [paths[i] for i in aspect_odd],
                           {"aspect": {paths[i]: round(float(aspect[i]), 3) for i in aspect_odd}}))


# --------------------------------------------------------------------------- duplicates


def _groups(n, pairs):
    """Groups around leaders: the first image not yet grouped leads, and takes every image within
    the distance of it that is not grouped yet.
    NOTE: not connected components: chains of small steps (a, b close, b, c close, ...) would join
    thousands of merely similar images (small grey images especially) into one group."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    source = np.concatenate([pairs[:, 0], pairs[:, 1]])
    target = np.concatenate([pairs[:, 1], pairs[:, 0]])
    order = np.lexsort((target, source))  # by source, then target
    source, target = source[order], target[order]
    leaders, starts = np.unique(source, return_index=True)
    ends = np.append(starts[1:], len(source))
    target = target.tolist()
    grouped = set()
    groups = []
    for leader, start, end in zip(leaders.tolist(), starts.tolist(), ends.tolist()):
        if leader in grouped:
            continue
        members = [leader] + [j for j in target[start:end] if j not in grouped]
        if len(members) > 1:
            grouped.update(members)
            groups.append(members)
    return groups


def _check_duplicates(ds, m, t, out, stats):
    samples = ds.samples
    content = [s["content_hash"] for s in samples]
    by_hash = {}
    for i, h in enumerate(content):
        by_hash.setdefault(h, []).append(i)
    exact = [g for g in by_hash.values() if len(g) > 1]
    stats["exact_duplicate_groups"] = len(exact)
    _duplicate_findings(ds, exact, "exact", out)
    if m is None or not m.decoded:
        return
    ok = np.flatnonzero(m.ok)
    pairs = np.asarray(_C.near_duplicate_pairs(np.ascontiguousarray(m.phash[ok]), int(t["near_duplicate_bits"])))
    pairs = pairs.reshape(-1, 3)
    first, second = ok[pairs[:, 0]], ok[pairs[:, 1]]
    content = np.asarray(content)
    differ = content[first] != content[second] if len(pairs) else np.zeros(0, dtype=bool)
    edges = np.column_stack([first[differ], second[differ]])
    near = _groups(len(samples), edges)
    stats["near_duplicate_groups"] = len(near)
    _duplicate_findings(ds, near, "near", out)


def _duplicate_findings(ds, groups, how, out):
    samples = ds.samples
    crossing = [g for g in groups if len({samples[i]["split"] for i in g}) > 1]
    within = [g for g in groups if len({samples[i]["split"] for i in g}) == 1]
    word = "identical files" if how == "exact" else "near-identical images (perceptual hash)"
    if crossing:
        files = [samples[i]["path"] for g in crossing for i in g]
        out.append(Finding("duplicates", f"leak_{how}", "warning",
                           f"{len(crossing)} group(s) of {word} sit in different splits (leakage: the model is "
                           f"tested on images it trained on)",
                           "Keep each group in one split (delete the copies, or re-split: trugrade's split keeps "
                           "exact duplicates together).", files,
                           {"groups": [[(samples[i]["path"], samples[i]["split"]) for i in g] for g in crossing]}))
    if within:
        files = [samples[i]["path"] for g in within for i in g]
        out.append(Finding("duplicates", f"duplicate_{how}", "info",
                           f"{len(within)} group(s) of {word} within one split",
                           "Delete the extra copies; duplicates weigh those images more in training.", files,
                           {"groups": [[samples[i]["path"] for i in g] for g in within]}))
    if ds.task == "classification":
        conflicting = [g for g in groups if len({samples[i]["label"] for i in g}) > 1]
        if conflicting:
            out.append(Finding("labels", f"conflicting_labels_{how}", "warning",
                               f"{len(conflicting)} group(s) of {word} carry different labels",
                               "Decide the right class of each group and keep one copy with that label.",
                               [samples[i]["path"] for g in conflicting for i in g],
                               {"groups": [[(samples[i]["path"], ds.classes[samples[i]["label"]])
                                            for i in g] for g in conflicting]}))


# --------------------------------------------------------------------------- label errors


def confident_learning(labels, probs):
    """Confident learning (Northcutt, Jiang, Chuang 2021): per-class thresholds t_j = mean
    predicted probability of class j over the samples labelled j; a sample's confident class is
    the most probable of the classes whose probability reaches their threshold. Returns
    (issues, joint): the indices whose confident class differs from the given label, ranked by
    how strongly the model contradicts them (the margin p[confident] - p[given], largest first),
    with the confident class of each; and the confident joint [given, confident] counts."""
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    thresholds = np.full(k, np.inf)
    for j in range(k):
        rows = labels == j
        if rows.any():
            thresholds[j] = probs[rows, j].mean()
    above = probs >= thresholds[None, :]
    masked = np.where(above, probs, -np.inf)
    confident = np.argmax(masked, axis=1)
    has = above.any(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[has], confident[has]), 1)
    off = np.flatnonzero(has & (confident != labels))
    margin = probs[off, confident[off]] - probs[off, labels[off]]
    keep = margin > 0
    off, margin = off[keep], margin[keep]
    order = np.argsort(-margin, kind="stable")
    return [(int(off[i]), int(confident[off[i]]), float(margin[i])) for i in order], joint


def _load_predictions(predictions, ds):
    if isinstance(predictions, (str, os.PathLike)):
        predictions = np.load(os.fspath(predictions))
    if isinstance(predictions, dict):
        k = len(ds.classes)
        rows = np.full((len(ds.samples), k), np.nan)
        index = {s["path"]: i for i, s in enumerate(ds.samples)}
        for path, row in predictions.items():
            if path in index:
                rows[index[path]] = row
        predictions = rows
    probs = np.asarray(predictions, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(ds.samples), len(ds.classes)):
        raise TrugradeValueError(f"validate: predictions must be [samples, classes] = [{len(ds.samples)}, "
                                 f"{len(ds.classes)}] in the manifest's sample order (or {{path: row}}), got "
                                 f"shape {probs.shape}")
    return probs


def _check_label_errors(ds, predictions, out, stats):
    if ds.task != "classification":
        out.append(Finding("label_errors", "label_errors_skipped", "info",
                           f"label errors are only looked for in classification datasets, not {ds.task}",
                           "Nothing to do.", []))
        return
    probs = _load_predictions(predictions, ds)
    rows = np.flatnonzero(np.all(np.isfinite(probs), axis=1))
    labels = np.array([ds.samples[i]["label"] for i in rows])
    issues, joint = confident_learning(labels, probs[rows])
    stats["confident_joint"] = joint.tolist()
    if not issues:
        return
    files = [ds.samples[rows[i]]["path"] for i, _, _ in issues]
    out.append(Finding("label_errors", "likely_label_error", "warning",
                       f"{len(issues)} sample(s) are probably mislabelled: the trained model confidently "
                       f"predicts another class (confident learning)",
                       "Review these samples, most suspicious first; correct the labels that are wrong.",
                       files, {"suggestions": [{"path": ds.samples[rows[i]]["path"],
                                                "given": ds.classes[labels[i]], "predicted": ds.classes[c],
                                                "margin": round(margin, 4)} for i, c, margin in issues]}))


def load_model_reference(model, runs_directory="runs"):
    """A trained classifier from a run folder, a run name (under `runs_directory`), a checkpoint
    (.safetensors) or an already loaded model (trugrade.load_model)."""
    from .predict import LoadedModel, load_model
    if isinstance(model, LoadedModel):
        return model
    path = os.fspath(model)
    if not os.path.exists(path):
        from .runs import resolve_run
        path = resolve_run(path, runs_directory)
    loaded = load_model(path)
    if loaded.task != "classification":
        raise TrugradeValueError(f"validate: {path} is a {loaded.task} model; label errors are looked for with a "
                                 "classifier")
    return loaded


def _sample_probabilities(ds, indices, forward, pipeline, channels, batch_size=64, workers=2):
    """Class probabilities [len(indices), classes] of the samples ds.samples[indices] (float64;
    NaN rows for the files that do not decode), the images prepared by `pipeline` (a list of
    trugrade.augment transforms ending at the model's input) and scored by forward(x) -> logits."""
    from .data import Loader
    indices = [int(i) for i in indices]
    if not indices:
        return np.zeros((0, len(ds.classes)))
    sub = dict(ds.data)
    sub["samples"] = [dict(ds.samples[i], split="train") for i in indices]
    sub["notes"] = []
    loader = Loader(sub, split=None, batch_size=batch_size, pipeline=pipeline, workers=workers, sampler="sequential",
                    on_bad_file="skip", channels=channels)
    rows = []
    for images, _ in loader.epoch(0):
        logits = np.asarray(forward(np.ascontiguousarray(images, dtype=np.float32)), dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        rows.append(e / e.sum(axis=1, keepdims=True))
    probs = np.concatenate(rows)
    # NOTE: the loader puts the next good sample where a file fails; that row is not this sample's
    position = {s["path"]: k for k, s in enumerate(sub["samples"])}
    for skipped in loader.skipped:
        if skipped["path"] in position:
            probs[position[skipped["path"]]] = np.nan
    return probs


def model_probabilities(ds, model, batch_size=64, runs_directory="runs"):
    """The trained classifier's class probabilities for every sample of the Dataset `ds`, in
    manifest order ([samples, classes]; NaN rows for files that do not decode or labels outside
    the classes). The model's classes must be the dataset's. Images are prepared as
    LoadedModel.predict does: resized to the model's input, normalised with its statistics."""
    loaded = load_model_reference(model, runs_directory)
    if list(loaded.classes) != list(ds.classes):
        raise TrugradeValueError(f"validate: the model's classes {list(loaded.classes)[:8]} are not the dataset's "
                                 f"{list(ds.classes)[:8]}; give the run or checkpoint trained on this dataset")
    k = len(ds.classes)
    usable = [i for i, s in enumerate(ds.samples) if 0 <= s.get("label", -1) < k]
    pipeline = [{"name": "resize", "size": loaded.input_size},
                {"name": "normalize", "mean": [float(v) for v in loaded.mean], "std": [float(v) for v in loaded.std]}]
    probs = np.full((len(ds.samples), k), np.nan)
    probs[usable] = _sample_probabilities(ds, usable, lambda x: loaded.model.forward(x), pipeline,
                                          loaded.in_channels, batch_size)
    return probs


LABEL_ISSUES_NAME = "label_issues.json"


def run_label_issues(folder, ds, splits, forward, pipeline, channels, batch_size=64):
    """Confident learning after training: the model's probabilities on the samples of `splits`
    (e.g. ("train", "val")) of the Dataset `ds`, the likely label errors among them written to
    folder/label_issues.json (and a section appended to folder/report.html when it exists).
    NOTE: training-split probabilities are in-sample (the model has seen those labels); a
    mislabelled sample is found there only while the model has not memorised it, so the
    validation split's findings are the more reliable. Returns the written dict."""
    indices = [i for i, s in enumerate(ds.samples) if s["split"] in splits and 0 <= s["label"] < len(ds.classes)]
    probs = np.full((len(ds.samples), len(ds.classes)), np.nan)
    probs[indices] = _sample_probabilities(ds, indices, forward, pipeline, channels, batch_size)
    findings, stats = [], {}
    _check_label_errors(ds, probs, findings, stats)
    suggestions = findings[0].details["suggestions"] if findings else []
    split_of = {s["path"]: s["split"] for s in ds.samples}
    for row in suggestions:
        row["split"] = split_of[row["path"]]
    result = {"method": "confident learning (Northcutt et al. 2021): per-class thresholds = mean self-confidence",
              "splits": list(splits), "samples_scored": int(np.all(np.isfinite(probs), axis=1).sum()),
              "classes": list(ds.classes), "confident_joint": stats.get("confident_joint"),
              "issues": suggestions}
    with open(os.path.join(folder, LABEL_ISSUES_NAME), "w", encoding="utf-8") as out:
        json.dump(result, out, indent=1, ensure_ascii=False)
        out.write("\n")
    report = os.path.join(folder, "report.html")
    if os.path.isfile(report):
        from .validator_html import label_issues_section
        with open(report, encoding="utf-8") as f:
            page = f.read()
        section = label_issues_section(ds.root, result)
        page = page.replace("</body>", section + "</body>") if "</body>" in page else page + section
        with open(report, "w", encoding="utf-8") as f:
            f.write(page)
    return result


# --------------------------------------------------------------------------- entry points


def validate_dataset(path, predictions=None, *, model=None, checks=None, mode="decode", threads=None,
                     num_classes=None, thresholds=None, max_pixels=None, json_path=None, html_path=None,
                     runs_directory="runs", info=None):
    """Validates a dataset: a folder (scanned), a manifest file, a dataset folder made by
    trugrade.creator (manifest.json inside), a Dataset or a manifest dict.

    predictions: out-of-sample class probabilities [samples, classes] in manifest order, a .npy
        file of them, or {path: row}; enables the label-error check (classification).
    model: instead of predictions, a trained classifier: a run folder or name (under
        runs_directory), a checkpoint (.safetensors) or a trugrade.load_model result; its
        probabilities on every sample feed the label-error check (training samples are
        in-sample: the model has seen their labels, so it catches fewer errors there).
    checks: the checks to run (default all of CHECKS that apply).
    mode: "decode" reads every pixel (all checks); "header" reads headers only (fast; no quality
        or near-duplicate checks, damaged pixel data goes unnoticed).
    threads: threads for reading files (default: trugrade's current setting).
    num_classes: classes of a segmentation set (mask values 0..num_classes-1); default from
        dataset.json or the manifest's classes.
    thresholds: overrides of DEFAULT_THRESHOLDS.
    json_path / html_path: also write the report there.
    info: the dataset.json of a created dataset (task, its class list) when `path` is a Dataset
        (a folder or manifest file finds its own).
    """
    started = time.perf_counter()
    if mode not in ("decode", "header"):
        raise TrugradeValueError(f"validate: mode must be 'decode' or 'header', got {mode!r}")
    t = dict(DEFAULT_THRESHOLDS)
    for key, value in (thresholds or {}).items():
        if key not in t:
            raise TrugradeValueError(f"validate: unknown threshold {key!r}; known: {', '.join(t)}")
        t[key] = value
    wanted = set(CHECKS if checks is None else checks)
    unknown = wanted - set(CHECKS)
    if unknown:
        raise TrugradeValueError(f"validate: unknown check(s) {sorted(unknown)}; known: {', '.join(CHECKS)}")
    previous = get_num_threads()
    if threads is not None:  # NOTE: before the scan, which reads (hashes, probes) every file in parallel too
        set_num_threads(threads)
    try:
        ds, found_info, fatal = resolve(path)
        info = found_info if info is None else info
        if ds is None:
            return Report(os.fspath(path) if not isinstance(path, (dict, Dataset)) else "?", None, [], [fatal],
                          {"n_samples": 0})
        findings, stats = [], {"n_samples": len(ds.samples), "task": ds.task, "layout": ds.layout,
                               "splits": {sp: sum(s["split"] == sp for s in ds.samples) for sp in SPLITS}}
        if not ds.samples:
            findings.append(Finding("format", "no_samples", "fatal", "the dataset has no samples",
                                    "Check the folder layout (see trugrade.datasets) and the scan's notes.", []))
        n_classes = _num_classes(ds, info, num_classes)
        needs_files = wanted & {"format", "labels", "balance", "quality", "duplicates"}
        m = _Measure(ds, mode, max_pixels) if needs_files and ds.samples else None
        if m is not None:
            stats["files_failed"] = int((~m.ok).sum())
            ok = m.ok
            if ok.any():
                stats["image_size_median"] = [int(np.median(m.width[ok])), int(np.median(m.height[ok]))]
                stats["channels"] = {int(c): int(n) for c, n in zip(*np.unique(m.channels[ok], return_counts=True))}
        if "format" in wanted:
            _check_format(ds, m, t, findings)
        if "labels" in wanted:
            _check_notes(ds, findings)
            _check_labels(ds, m, t, n_classes, findings, info)
        if "balance" in wanted:
            _check_balance(ds, m, t, n_classes, findings, stats)
        if "quality" in wanted and m is not None:
            _check_quality(ds, m, t, findings)
        if "duplicates" in wanted:
            _check_duplicates(ds, m, t, findings, stats)
        if "label_errors" in wanted and model is not None and predictions is None and ds.samples:
            if ds.task == "classification":
                predictions = model_probabilities(ds, model, runs_directory=runs_directory)
            else:
                predictions = np.zeros((0, 0))
        if "label_errors" in wanted and predictions is not None:
            _check_label_errors(ds, predictions, findings, stats)
    finally:
        if threads is not None:
            set_num_threads(previous)
    seconds = time.perf_counter() - started
    stats["seconds"] = round(seconds, 4)
    stats["files_per_second"] = round(len(ds.samples) / seconds, 1) if seconds > 0 else None
    report = Report(ds.root, ds.task, list(ds.classes), findings, stats)
    if json_path is not None:
        report.to_json(json_path)
    if html_path is not None:
        report.to_html(html_path)
    return report


def dataset_info(path):
    """The dataset.json of a created dataset named by a folder or its manifest file ({} if none)."""
    path = os.fspath(path)
    return _read_info(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))


def preflight(path_or_manifest, allow=False, stream="stderr", num_classes=None, info=None):
    """The fast checks training runs before it starts: headers (not pixels), labels, class
    balance and exact duplicates. Prints the findings to `stream` (a file; default sys.stderr,
    None: silent) and returns
    them; raises DatasetError listing the fatal ones unless allow=True."""
    if stream == "stderr":
        stream = sys.stderr
    report = validate_dataset(path_or_manifest, checks=FAST_CHECKS, mode="header", num_classes=num_classes,
                              info=info)
    if stream is not None and report.findings:
        print(f"trugrade preflight: {report.summary()}", file=stream)
    fatal = report.fatal
    if fatal and not allow:
        lines = "\n".join(str(f) for f in fatal)
        raise DatasetError(f"preflight: {len(fatal)} fatal problem(s) in {report.root}; training will not start:\n"
                           f"{lines}\nFix them, or start anyway with the override (allow=True).")
    return report.findings
