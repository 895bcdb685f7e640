"""The schema of a trugrade training config: one declarative table of sections and fields.

Validation, defaults and the reference documentation all come from `SCHEMA`, `PRESETS`
and `RULES` below; trugrade/config.py only loads YAML, merges layers, keeps line numbers
and turns problems into ConfigError. `reference_markdown()` renders the reference (every key,
type, default and meaning; augmentations; presets; rules).

This module knows nothing of files or lines: a spec's `validate(value, path, problems)`
returns the cleaned value and appends `(dotted_path, message)` to `problems`.
"""
import abc
import difflib
import math
import re

# --------------------------------------------------------------------------- value specs


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()
INVALID = object()  # what validate() returns for a value it rejected


def join_path(path, key):
    return f"{path}.{key}" if path else str(key)


def type_name(value):
    """How an error message names the type of a value a user wrote."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def show(value):
    """A value as it would be written in YAML, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word, candidates):
    """"; did you mean 'lr'?" for a near miss, else ""."""
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key(key, path, allowed):
    where = f"'{path}'" if path else "the top level"
    return f"unknown key '{key}'{did_you_mean(key, allowed)} (keys allowed in {where}: {', '.join(allowed)})"


class Spec(abc.ABC):
    """A kind of value: what it is called in messages, which Python types it takes, how it is checked."""

    @abc.abstractmethod
    def describe(self):
        """The spec in words, for messages and the reference ("an integer >= 1")."""

    @abc.abstractmethod
    def accepts(self, value):
        """Whether the value has this spec's type (used by OneOf to choose an alternative)."""

    @abc.abstractmethod
    def validate(self, value, path, problems):
        """The cleaned value, or INVALID after appending (path, message) to problems."""

    def wrong_type(self, value, path, problems):
        problems.append((path, f"wrong type: expected {self.describe()}, got {type_name(value)} ({show(value)})"))
        return INVALID


def _number(value):
    return str(value) if isinstance(value, int) else f"{value:g}"


def _range_text(lo, hi, lo_open, hi_open):
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {_number(lo)}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {_number(hi)}")
    return " and ".join(parts)


class Int(Spec):
    def __init__(self, lo=None, hi=None):
        self.lo, self.hi = lo, hi

    def describe(self):
        bounds = _range_text(self.lo, self.hi, False, False)
        return f"an integer {bounds}" if bounds else "an integer"

    def accepts(self, value):
        return isinstance(value, int) and not isinstance(value, bool)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            problems.append((path, f"out of range: {value} is not {_range_text(self.lo, self.hi, False, False)}"))
            return INVALID
        return value


class Float(Spec):
    """A finite number; integers are accepted and stored as floats."""

    def __init__(self, lo=None, hi=None, lo_open=False, hi_open=False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open

    def describe(self):
        bounds = _range_text(self.lo, self.hi, self.lo_open, self.hi_open)
        return f"a number {bounds}" if bounds else "a number"

    def accepts(self, value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        value = float(value)
        if not math.isfinite(value):
            problems.append((path, f"out of range: {show(value)} is not a finite number"))
            return INVALID
        below = self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo)
        above = self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi)
        if below or above:
            bounds = _range_text(self.lo, self.hi, self.lo_open, self.hi_open)
            problems.append((path, f"out of range: {value:g} is not {bounds}"))
            return INVALID
        return value


class Bool(Spec):
    def describe(self):
        return "true or false"

    def accepts(self, value):
        return isinstance(value, bool)

    def validate(self, value, path, problems):
        return value if self.accepts(value) else self.wrong_type(value, path, problems)


class Str(Spec):
    """A non-empty string, optionally one of `choices` or matching `pattern`."""

    def __init__(self, choices=None, pattern=None, pattern_text=None, suffix=None):
        self.choices = tuple(choices) if choices else None
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_text = pattern_text
        self.suffix = suffix

    def describe(self):
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern_text:
            return f"a string of {self.pattern_text}"
        if self.suffix:
            return f"a path to a {self.suffix} file"
        return "a non-empty string"

    def accepts(self, value):
        return isinstance(value, str)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        if self.choices and value not in self.choices:
            problems.append((path, f"not an allowed value: {show(value)} is not one of "
                                   f"{', '.join(self.choices)}{did_you_mean(value, self.choices)}"))
            return INVALID
        if not value.strip():
            problems.append((path, "not an allowed value: an empty string; expected " + self.describe()))
            return INVALID
        if self.pattern and not self.pattern.fullmatch(value):
            problems.append((path, f"not an allowed value: {show(value)} is not {self.describe()}"))
            return INVALID
        if self.suffix and not value.lower().endswith(self.suffix):
            problems.append((path, f"not an allowed value: {show(value)} does not end in {self.suffix}; "
                                   f"expected {self.describe()}"))
            return INVALID
        return value


class ClassKey(Spec):
    """A class named by its name or its index; stored as a string so the config stays JSON."""

    def describe(self):
        return "a class name or class index"

    def accepts(self, value):
        return isinstance(value, (str, int)) and not isinstance(value, bool)

    def validate(self, value, path, problems):
        if not self.accepts(value) or (isinstance(value, int) and value < 0) or str(value).strip() == "":
            return self.wrong_type(value, path, problems)
        return str(value)


class Nullable(Spec):
    def __init__(self, inner):
        self.inner = inner

    def describe(self):
        return f"{self.inner.describe()}, or null"

    def accepts(self, value):
        return value is None or self.inner.accepts(value)

    def validate(self, value, path, problems):
        return None if value is None else self.inner.validate(value, path, problems)


class OneOf(Spec):
    """The first alternative whose type matches the value validates it."""

    def __init__(self, *alternatives):
        self.alternatives = alternatives

    def describe(self):
        return " or ".join(alt.describe() for alt in self.alternatives)

    def accepts(self, value):
        return any(alt.accepts(value) for alt in self.alternatives)

    def validate(self, value, path, problems):
        for alt in self.alternatives:
            if alt.accepts(value):
                return alt.validate(value, path, problems)
        return self.wrong_type(value, path, problems)


class ListOf(Spec):
    def __init__(self, item, length=None, min_length=0):
        self.item, self.length, self.min_length = item, length, min_length

    def describe(self):
        count = f"{self.length} " if self.length else ""
        return f"a list of {count}items, each {self.item.describe()}"

    def accepts(self, value):
        return isinstance(value, list)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        if self.length is not None and len(value) != self.length:
            problems.append((path, f"out of range: {_items(len(value))}; expected exactly {self.length}"))
            return INVALID
        if len(value) < self.min_length:
            problems.append((path, f"out of range: {_items(len(value))}; expected at least {self.min_length}"))
            return INVALID
        out = [self.item.validate(item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
        return INVALID if any(item is INVALID for item in out) else out


def _items(count):
    return f"a list of {count} item{'' if count == 1 else 's'}"


class MapOf(Spec):
    def __init__(self, key, value):
        self.key, self.value = key, value

    def describe(self):
        return f"a mapping of {self.key.describe()} to {self.value.describe()}"

    def accepts(self, value):
        return isinstance(value, dict)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        out = {}
        for key, item in value.items():
            sub = join_path(path, key)
            clean_key = self.key.validate(key, sub, problems)
            clean_item = self.value.validate(item, sub, problems)
            if clean_key is not INVALID and clean_key in out:
                problems.append((sub, f"duplicate key: {show(key)} names the same class as another key"))
            elif clean_key is not INVALID and clean_item is not INVALID:
                out[clean_key] = clean_item
        return out if len(out) == len(value) else INVALID


class Field:
    """One key of a section: its spec, its default (or REQUIRED) and one line of documentation."""

    def __init__(self, spec, default=REQUIRED, doc=""):
        self.spec, self.default, self.doc = spec, default, doc


class Section(Spec):
    """A mapping with a fixed set of keys; absent keys take their defaults."""

    def __init__(self, fields, doc=""):
        self.fields, self.doc = fields, doc

    def describe(self):
        return "a mapping with keys " + ", ".join(self.fields)

    def accepts(self, value):
        return isinstance(value, dict)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        out = {}
        for key in value:
            if key not in self.fields:
                problems.append((join_path(path, key), unknown_key(key, path, tuple(self.fields))))
        ok = True
        for name, field in self.fields.items():
            sub = join_path(path, name)
            if name in value:
                out[name] = field.spec.validate(value[name], sub, problems)
            elif isinstance(field.spec, Section):
                out[name] = field.spec.validate({}, sub, problems)
            elif field.default is REQUIRED:
                problems.append((sub, f"missing required key '{sub}' ({field.spec.describe()}): {field.doc}"))
                out[name] = INVALID
            else:
                out[name] = _copy(field.default)
            ok = ok and out[name] is not INVALID
        return out if ok else INVALID


class Tagged(Spec):
    """A mapping {name: <variant>, params: {...}} whose params follow the section of its name."""

    def __init__(self, variants):
        self.variants = variants  # name -> (Section of params, doc)

    def describe(self):
        return "a mapping {name: ..., params: {...}} with name one of " + ", ".join(self.variants)

    def accepts(self, value):
        return isinstance(value, dict)

    def validate(self, value, path, problems):
        if not self.accepts(value):
            return self.wrong_type(value, path, problems)
        for key in value:
            if key not in ("name", "params"):
                problems.append((join_path(path, key), unknown_key(key, path, ("name", "params"))))
        if "name" not in value:
            problems.append((join_path(path, "name"), f"missing required key '{join_path(path, 'name')}' "
                                                      f"(one of {', '.join(self.variants)})"))
            return INVALID
        name = Str(choices=self.variants).validate(value["name"], join_path(path, "name"), problems)
        if name is INVALID:
            return INVALID
        params = value.get("params")
        params = self.variants[name][0].validate({} if params is None else params, join_path(path, "params"), problems)
        return INVALID if params is INVALID else {"name": name, "params": params}


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --------------------------------------------------------------------------- vocabularies

CLASSIFICATION_ARCHS = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "densenet121", "vgg16",
                        "vgg16_bn", "mobilenet_v3_small", "smallcnn", "fashioncnn")
SEGMENTATION_ARCHS = ("unet", "unet_se", "deeplabv3plus", "fpn")
ARCHS = CLASSIFICATION_ARCHS + SEGMENTATION_ARCHS
ENCODER_ARCHS = ("deeplabv3plus", "fpn")  # the archs that take model.encoder
ENCODERS = ("resnet18", "resnet34", "resnet50", "efficientnet_b0", "mobilenet_v3_small")

DATA_FORMATS = ("auto", "imagefolder", "csv", "idx", "manifest", "seg_folders")

METRIC_NAMES = ("loss", "accuracy", "balanced_accuracy", "f1", "precision", "recall", "auc", "iou", "dice")
METRICS = tuple(f"{split}_{name}" for split in ("val", "train") for name in METRIC_NAMES)

LOSS_COMPONENTS = ("cross_entropy", "wce", "focal", "dice")

SCHEDULE_PARAMS = {  # which schedule.* keys each schedule reads (documentation and rules)
    "none": (),
    "step": ("step_size", "gamma"),
    "multistep": ("milestones", "gamma"),
    "cosine": ("min_lr",),
    "warmup_cosine": ("warmup_epochs", "min_lr"),
    "onecycle": ("max_lr", "pct_start"),
    "plateau": ("metric", "patience", "factor", "min_lr"),
}

PROBABILITY = Float(0.0, 1.0)
SIZE = OneOf(Int(1, 8192), ListOf(Int(1, 8192), length=2))
RANGE_PAIR = ListOf(Float(0.0, None), length=2)


def _p(default=0.5):
    return Field(PROBABILITY, default, "probability of applying it to an image")


AUGMENTATIONS = {  # name -> (Section of params, doc); see AUGMENT_EVERY_SPLIT
    "hflip": (Section({"p": _p()}), "mirror left-right"),
    "vflip": (Section({"p": _p()}), "mirror top-bottom"),
    "rotate90": (Section({"p": _p()}), "rotate by a random multiple of 90 degrees"),
    "rotate": (Section({"degrees": Field(Float(0.0, 180.0), 15.0, "largest angle either way"), "p": _p()}),
               "rotate by a random angle in [-degrees, degrees]"),
    "resize": (Section({"size": Field(SIZE, REQUIRED, "output size: one integer or [height, width]")}),
               "resize to a fixed size (bilinear)"),
    "center_crop": (Section({"size": Field(SIZE, REQUIRED, "crop size: one integer or [height, width]")}),
                    "cut the central region"),
    "random_crop": (Section({"size": Field(SIZE, REQUIRED, "crop size: one integer or [height, width]"),
                             "padding": Field(Int(0, 1024), 0, "zero padding added on every side first")}),
                    "cut a region at a random place"),
    "random_resized_crop": (Section({
        "size": Field(SIZE, REQUIRED, "output size: one integer or [height, width]"),
        "scale": Field(RANGE_PAIR, [0.08, 1.0], "[min, max] fraction of the image area kept"),
        "ratio": Field(RANGE_PAIR, [0.75, 1.3333333333333333], "[min, max] aspect ratio of the crop")}),
        "random area and aspect crop resized to size"),
    "color_jitter": (Section({
        "brightness": Field(Float(0.0, 1.0), 0.2, "largest relative brightness change"),
        "contrast": Field(Float(0.0, 1.0), 0.2, "largest relative contrast change"),
        "saturation": Field(Float(0.0, 1.0), 0.0, "largest relative saturation change (RGB only)"),
        "hue": Field(Float(0.0, 0.5), 0.0, "largest hue shift as a fraction of the circle (RGB only)"),
        "p": _p(1.0)}), "random brightness, contrast, saturation and hue"),
    "gaussian_noise": (Section({"std": Field(Float(0.0, 10.0), 0.01, "standard deviation of the noise"),
                                "p": _p()}), "add Gaussian noise"),
    "gaussian_blur": (Section({"sigma": Field(RANGE_PAIR, [0.1, 2.0], "[min, max] blur sigma in pixels"),
                               "p": _p()}), "blur with a random sigma"),
    "random_erasing": (Section({"scale": Field(RANGE_PAIR, [0.02, 0.33], "[min, max] fraction of the area erased"),
                                "p": _p()}), "erase a random rectangle"),
    "normalize": (Section({"mean": Field(OneOf(Str(choices=("auto",)), ListOf(Float(), min_length=1)), REQUIRED,
                                         "mean per channel, or auto (measured on the training split)"),
                           "std": Field(OneOf(Str(choices=("auto",)), ListOf(Float(0.0, None, lo_open=True),
                                                                            min_length=1)), REQUIRED,
                                        "standard deviation per channel, or auto (with mean: auto)")}),
                  "subtract mean and divide by std per channel (after scaling pixels to [0, 1]); mean and std "
                  "auto: measured per channel on the training split when training starts, and written into the "
                  "run's config.yaml and checkpoints"),
}

# NOTE: the deterministic transforms also run on validation and test images (a model trained on
# resized, normalized images must be evaluated on them too); every other one is training only.
AUGMENT_EVERY_SPLIT = ("resize", "center_crop", "normalize")

# --------------------------------------------------------------------------- the schema

SCHEMA = Section({
    "preset": Field(Nullable(Str(choices=("quick", "standard", "intensive"))), None,
                    "a preset applied under this file: quick (5 epochs), standard (25), intensive (50)"),
    "model": Field(Section({
        "arch": Field(Str(choices=ARCHS), REQUIRED, "the architecture"),
        "num_classes": Field(Int(1, 100000), REQUIRED, "number of classes (segmentation: including background)"),
        "in_channels": Field(Int(1, 1024), 3, "channels of the input images"),
        "input_size": Field(SIZE, 224, "input size the model is built for: one integer or [height, width]"),
        "dropout": Field(Float(0.0, 1.0, hi_open=True), 0.0, "dropout before the classifier head"),
        "pretrained": Field(Nullable(Str(suffix=".safetensors")), None,
                            "weights to start from (a .safetensors file), or null for random init"),
        "freeze": Field(ListOf(Str()), [],
                        "parameters kept fixed: name patterns (fnmatch, e.g. 'layer1.*') or stage names "
                        "(stem, layer1..layer4, features, encoder, decoder)"),
        "encoder": Field(Nullable(Str(choices=ENCODERS)), None,
                         "backbone of deeplabv3plus and fpn (required there, null for other archs)"),
    }, "the network")),
    "data": Field(Section({
        "path": Field(Str(), REQUIRED, "dataset folder or file, as written (relative to the working directory)"),
        "format": Field(Str(choices=DATA_FORMATS), "auto",
                        "dataset layout: auto (detected), imagefolder (one folder per class), csv (file,label "
                        "rows), idx (MNIST IDX files), manifest (JSON lines), seg_folders (images/ and masks/)"),
        "batch_size": Field(Int(1, 65536), 32, "images per step"),
        "num_workers": Field(Int(0, 256), 2, "decoding threads (0: decode in the training thread)"),
        "split": Field(Section({
            "train": Field(Float(0.0, 1.0), 0.8, "fraction used for training"),
            "val": Field(Float(0.0, 1.0), 0.1, "fraction used for validation"),
            "test": Field(Float(0.0, 1.0), 0.1, "fraction held out for testing"),
        }, "how a dataset without its own splits is divided (sums to 1)")),
        "seed": Field(Int(0, 2**63 - 1), 0, "seed of the split and of the shuffling"),
        "sampler": Field(Str(choices=("shuffle", "balanced")), "shuffle",
                         "shuffle (each image once per epoch) or balanced (classes drawn equally often)"),
        "oversample": Field(MapOf(ClassKey(), Float(0.0, 1000.0, lo_open=True)), {},
                            "class (name or index) -> factor by which its images are repeated per epoch"),
        "cache_mb": Field(Int(0, 1 << 20), 512, "memory for decoded images kept between epochs (0: none)"),
        "on_bad_file": Field(Str(choices=("skip", "stop")), "stop",
                             "an undecodable image: skip it (and report it) or stop with an error"),
        "preflight": Field(Bool(), True,
                           "check a folder dataset before training (headers, labels, balance, duplicates); fatal "
                           "findings stop the run (false: print them and train anyway)"),
        "label_issues": Field(Bool(), True,
                              "after training, score the train and val images and list likely label errors "
                              "(confident learning) in label_issues.json and report.html"),
        "augment": Field(ListOf(Tagged(AUGMENTATIONS)), [],
                         "image transforms in order, each {name, params}; random ones apply to training "
                         "only, " + ", ".join(AUGMENT_EVERY_SPLIT) + " to every split (see the augmentation table)"),
    }, "the dataset and its loading")),
    "optim": Field(Section({
        "name": Field(Str(choices=("sgd", "adam", "adamw")), "adamw", "the optimizer"),
        "lr": Field(Float(0.0, 10.0, lo_open=True), 1e-3, "learning rate (peak rate with warm-up)"),
        "momentum": Field(Float(0.0, 1.0, hi_open=True), 0.9, "sgd momentum"),
        "nesterov": Field(Bool(), False, "sgd Nesterov momentum (needs momentum > 0)"),
        "weight_decay": Field(Float(0.0, 1.0), 1e-4, "weight decay (decoupled for adamw, L2 for sgd and adam)"),
        "betas": Field(ListOf(Float(0.0, 1.0, hi_open=True), length=2), [0.9, 0.999], "adam and adamw betas"),
        "eps": Field(Float(0.0, 1.0, lo_open=True), 1e-8, "adam and adamw epsilon"),
        "no_decay_on_norm_and_bias": Field(Bool(), True, "exempt normalization weights and biases from weight decay"),
        "param_groups": Field(ListOf(Section({
            "pattern": Field(Str(), REQUIRED, "parameter names it covers (fnmatch pattern, e.g. 'head.*')"),
            "lr": Field(Float(0.0, 10.0, lo_open=True), REQUIRED, "learning rate of those parameters"),
        })), [], "learning rates per parameter group; the first matching pattern wins"),
    }, "the optimizer")),
    "schedule": Field(Section({
        "name": Field(Str(choices=tuple(SCHEDULE_PARAMS)), "cosine",
                      "learning-rate schedule: " + "; ".join(
                          f"{name} ({', '.join(keys) or 'constant lr'})" for name, keys in SCHEDULE_PARAMS.items())),
        "step_size": Field(Int(1, 100000), 10, "step: epochs between decays"),
        "gamma": Field(Float(0.0, 1.0, lo_open=True), 0.1, "step and multistep: factor per decay"),
        "milestones": Field(ListOf(Int(1, 100000)), [], "multistep: increasing epochs at which to decay"),
        "warmup_epochs": Field(Int(0, 100000), 0, "warmup_cosine: epochs of linear warm-up from 0 to optim.lr"),
        "min_lr": Field(Float(0.0, 10.0), 0.0, "cosine, warmup_cosine and plateau: lowest learning rate"),
        "max_lr": Field(Nullable(Float(0.0, 10.0, lo_open=True)), None, "onecycle: peak rate (null: optim.lr)"),
        "pct_start": Field(Float(0.0, 1.0, lo_open=True, hi_open=True), 0.3,
                           "onecycle: fraction of the run spent rising"),
        "metric": Field(Str(choices=METRICS), "val_loss", "plateau: the metric watched"),
        "patience": Field(Int(0, 100000), 5, "plateau: epochs without improvement before a decay"),
        "factor": Field(Float(0.0, 1.0, lo_open=True, hi_open=True), 0.1, "plateau: factor per decay"),
    }, "the learning-rate schedule (stepped per epoch)")),
    "train": Field(Section({
        "epochs": Field(Int(1, 100000), 10, "passes over the training set"),
        "grad_clip_norm": Field(Nullable(Float(0.0, None, lo_open=True)), None,
                                "clip the global gradient norm to this, or null"),
        "grad_clip_value": Field(Nullable(Float(0.0, None, lo_open=True)), None,
                                 "clip every gradient element to [-value, value], or null"),
        "accumulate": Field(Int(1, 1024), 1, "batches whose mean gradient makes one optimizer step (windows restart "
                                                 "each epoch)"),
        "bf16": Field(Bool(), False, "bfloat16 mixed precision: conv/linear/matmul operands rounded to "
                                      "bfloat16, float32 accumulation, weights, loss and optimizer"),
        "ema_decay": Field(Nullable(Float(0.0, 1.0, lo_open=True, hi_open=True)), None,
                           "keep an exponential moving average of the weights with this decay, or null; "
                           "validation, the test and the checkpoints' weights use the average"),
        "label_smoothing": Field(Float(0.0, 1.0, hi_open=True), 0.0, "cross-entropy label smoothing"),
        "class_weights": Field(Nullable(OneOf(Str(choices=("auto",)), ListOf(Float(0.0, None, lo_open=True)))), None,
                               "loss weight per class: null (all 1), auto (inverse class frequency, "
                               "scikit-learn's 'balanced') or a list "
                               "of num_classes numbers"),
        "val_every": Field(Int(1, 100000), 1, "epochs between validations"),
        "early_stopping": Field(Nullable(Section({
            "metric": Field(Str(choices=METRICS), "val_loss", "the metric watched"),
            "patience": Field(Int(1, 100000), 10, "validations without improvement before stopping"),
            "min_delta": Field(Float(0.0, None), 0.0, "smallest change that counts as an improvement"),
            "mode": Field(Str(choices=("auto", "min", "max")), "auto",
                          "min or max is better; auto: min for *_loss, max otherwise"),
        })), None, "stop when the metric stops improving; null: never stop early"),
        "seed": Field(Int(0, 2**63 - 1), 0, "seed of weight initialization, dropout and augmentation"),
        "threads": Field(Int(0, 1024), 0, "compute threads (0: one per core)"),
    }, "the training loop")),
    "loss": Field(Section({
        "name": Field(Str(choices=("cross_entropy", "focal", "dice", "combined")), "cross_entropy", "the loss"),
        "weights": Field(MapOf(Str(choices=LOSS_COMPONENTS), Float(0.0, None)), {},
                         "combined: weight per component (cross_entropy, wce = cross-entropy with "
                         "train.class_weights, focal, dice)"),
        "focal_alpha": Field(Nullable(Float(0.0, 1.0)), 0.25, "focal: weight of the positive class, or null"),
        "focal_gamma": Field(Float(0.0, 10.0), 2.0, "focal: focusing exponent"),
        "dice_smooth": Field(Float(0.0, None), 1.0, "dice: smoothing added to numerator and denominator"),
    }, "the loss")),
    "checkpoint": Field(Section({
        "every": Field(Int(0, 100000), 1, "epochs between checkpoints (0: only the best and the last)"),
        "keep_last": Field(Int(0, 100000), 3, "periodic checkpoints kept (0: all)"),
        "best_metric": Field(Nullable(Str(choices=METRICS)), "val_loss", "metric that picks best.safetensors, or null"),
        "best_mode": Field(Str(choices=("auto", "min", "max")), "auto",
                           "min or max is better; auto: min for *_loss, max otherwise"),
    }, "checkpoints")),
    "tracking": Field(Section({
        "tensorboard": Field(Bool(), True, "write TensorBoard event files"),
        "mlflow": Field(Bool(), False, "log to MLflow (needs the mlflow package)"),
    }, "experiment tracking")),
    "registry": Field(Section({
        "path": Field(Nullable(Str()), None, "model registry folder (null: $TRUGRADE_REGISTRY, else "
                                             "~/.trugrade/registry)"),
    }, "the model registry")),
    "run": Field(Section({
        "name": Field(Nullable(Str(pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*",
                                   pattern_text="letters, digits, '.', '_', '-'")), None,
                      "run name; null: the config file's name"),
        "dir": Field(Str(), "runs", "folder that holds one subfolder per run"),
    }, "where the run's files go")),
})

PRESETS = {  # applied under the config file; a file's own keys win
    "quick": {"train": {"epochs": 5}},
    "standard": {"train": {"epochs": 25}},
    "intensive": {"train": {"epochs": 50}},
}

# --------------------------------------------------------------------------- rules across fields
# Each rule reads a validated config and yields (dotted_path, message); the path's line is reported.


def _rule_split_sums_to_one(cfg):
    """data.split: train + val + test must be 1."""
    split = cfg["data"]["split"]
    total = split["train"] + split["val"] + split["test"]
    if abs(total - 1.0) > 1e-6:
        yield "data.split", (f"out of range: train + val + test = {total:g}; the fractions must add up to 1 "
                             f"(got train {split['train']:g}, val {split['val']:g}, test {split['test']:g})")


def _rule_encoder(cfg):
    """model.encoder: required for deeplabv3plus and fpn, null for other archs."""
    model = cfg["model"]
    if model["arch"] in ENCODER_ARCHS and model["encoder"] is None:
        yield "model.encoder", (f"missing required key 'model.encoder' (one of {', '.join(ENCODERS)}): "
                                f"arch {model['arch']} needs a backbone")
    if model["arch"] not in ENCODER_ARCHS and model["encoder"] is not None:
        yield "model.encoder", (f"not an allowed value: arch {model['arch']} takes no encoder (only "
                                f"{', '.join(ENCODER_ARCHS)} do); remove it or set it to null")


def _rule_nesterov(cfg):
    """optim.nesterov: only with sgd and momentum > 0."""
    optim = cfg["optim"]
    if optim["nesterov"] and (optim["name"] != "sgd" or optim["momentum"] == 0.0):
        yield "optim.nesterov", "not an allowed value: nesterov needs optim.name sgd and optim.momentum > 0"


def _rule_schedule(cfg):
    """schedule: multistep needs increasing milestones; warm-up shorter than the run; min_lr below optim.lr."""
    schedule, epochs, lr = cfg["schedule"], cfg["train"]["epochs"], cfg["optim"]["lr"]
    milestones = schedule["milestones"]
    if schedule["name"] == "multistep" and not milestones:
        yield "schedule.milestones", "missing required key 'schedule.milestones': multistep needs at least one epoch"
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        yield "schedule.milestones", f"not an allowed value: {milestones} must be strictly increasing"
    if schedule["name"] == "warmup_cosine" and schedule["warmup_epochs"] >= epochs:
        yield "schedule.warmup_epochs", (f"out of range: {schedule['warmup_epochs']} warm-up epochs leave no "
                                         f"cosine phase in a run of train.epochs {epochs}")
    if schedule["name"] in ("cosine", "warmup_cosine", "plateau") and schedule["min_lr"] >= lr:
        yield "schedule.min_lr", f"out of range: min_lr {schedule['min_lr']:g} must be below optim.lr {lr:g}"


def _rule_loss_weights(cfg):
    """loss.weights: required (sum > 0) for combined, empty otherwise."""
    loss = cfg["loss"]
    if loss["name"] == "combined" and sum(loss["weights"].values()) <= 0.0:
        yield "loss.weights", (f"missing required key 'loss.weights': combined needs weights for some of "
                               f"{', '.join(LOSS_COMPONENTS)} (e.g. {{dice: 0.5, focal: 0.5}})")
    if loss["name"] != "combined" and loss["weights"]:
        yield "loss.weights", (f"not an allowed value: weights are only read when loss.name is combined, "
                               f"not {loss['name']}")


def _rule_class_weights(cfg):
    """train.class_weights: a list has one weight per class."""
    weights, num_classes = cfg["train"]["class_weights"], cfg["model"]["num_classes"]
    if isinstance(weights, list) and len(weights) != num_classes:
        yield "train.class_weights", (f"out of range: {len(weights)} weights for model.num_classes {num_classes}; "
                                      f"give one per class or use auto")


def _rule_normalize_channels(cfg):
    """data.augment normalize: one mean and std per input channel, or both auto."""
    channels = cfg["model"]["in_channels"]
    for i, aug in enumerate(cfg["data"]["augment"]):
        if aug["name"] == "normalize":
            if (aug["params"]["mean"] == "auto") != (aug["params"]["std"] == "auto"):
                yield f"data.augment[{i}].params", "not an allowed value: mean and std are both auto or both lists"
                continue
            for key in ("mean", "std"):
                if aug["params"][key] == "auto":
                    continue
                if len(aug["params"][key]) != channels:
                    yield f"data.augment[{i}].params.{key}", (
                        f"out of range: {len(aug['params'][key])} values for model.in_channels {channels}")


def _rule_augment_pairs(cfg):
    """data.augment [min, max] pairs (scale, ratio, sigma): min <= max; area fractions at most 1."""
    for i, aug in enumerate(cfg["data"]["augment"]):
        for key in ("scale", "ratio", "sigma"):
            pair = aug["params"].get(key)
            if pair is None:
                continue
            path = f"data.augment[{i}].params.{key}"
            if pair[0] > pair[1]:
                yield path, f"out of range: [{pair[0]:g}, {pair[1]:g}] is not a [min, max] pair (min > max)"
            elif key == "scale" and pair[1] > 1.0:
                yield path, f"out of range: an area fraction of {pair[1]:g} is more than the whole image (1)"


RULES = (_rule_split_sums_to_one, _rule_augment_pairs, _rule_encoder, _rule_nesterov, _rule_schedule,
         _rule_loss_weights, _rule_class_weights, _rule_normalize_channels)


def resolve_auto(cfg):
    """Replaces 'auto' modes by min or max so the resolved config says what will happen."""
    stopping = cfg["train"]["early_stopping"]
    if stopping is not None and stopping["mode"] == "auto":
        stopping["mode"] = metric_mode(stopping["metric"])
    checkpoint = cfg["checkpoint"]
    if checkpoint["best_mode"] == "auto":
        checkpoint["best_mode"] = metric_mode(checkpoint["best_metric"] or "val_loss")


def metric_mode(metric):
    return "min" if metric.endswith("_loss") else "max"


# --------------------------------------------------------------------------- documentation


def _default_text(field):
    if field.default is REQUIRED:
        return "**required**"
    return f"`{show(field.default)}`" if not isinstance(field.default, str) else f"`{field.default}`"


def _section_rows(section, path, rows):
    for name, field in section.fields.items():
        sub = join_path(path, name)
        spec = field.spec.inner if isinstance(field.spec, Nullable) else field.spec
        if isinstance(spec, Section) and not isinstance(field.spec, Nullable):
            rows.append(f"| `{sub}` | section | | {spec.doc} |")
            _section_rows(spec, sub, rows)
        elif isinstance(spec, Section):
            rows.append(f"| `{sub}` | section or null | {_default_text(field)} | {field.doc} |")
            _section_rows(spec, sub, rows)
        else:
            rows.append(f"| `{sub}` | {field.spec.describe()} | {_default_text(field)} | {field.doc} |")


def reference_markdown():
    """The config reference, generated from SCHEMA, AUGMENTATIONS, PRESETS and RULES."""
    lines = ["# trugrade config reference", "",
             "Layers, lowest first: built-in defaults < preset < config file < command-line overrides "
             "(`key.path=value`, the value read as YAML). Mappings merge key by key; lists and values replace.",
             "", "| key | value | default | meaning |", "|---|---|---|---|"]
    _section_rows(SCHEMA, "", lines)
    lines += ["", "## Augmentations (`data.augment` items: `{name: ..., params: {...}}`)", ""]
    for name, (params, doc) in AUGMENTATIONS.items():
        when = "every split" if name in AUGMENT_EVERY_SPLIT else "training only"
        lines.append(f"- `{name}` ({when}): {doc}")
        for key, field in params.fields.items():
            lines.append(f"  - `{key}`: {field.spec.describe()}, default {_default_text(field)}: {field.doc}")
    lines += ["", "## Presets", ""]
    lines += [f"- `{name}`: {values}" for name, values in PRESETS.items()]
    lines += ["", "## Rules across keys", ""]
    lines += [f"- {rule.__doc__}" for rule in RULES]
    return "\n".join(lines) + "\n"
