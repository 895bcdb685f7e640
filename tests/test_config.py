"""trugrade.config: shipped configs, layering (defaults < preset < file < overrides), typed
overrides, ConfigErrors that name file, line and key for every kind of problem, the
read-only Config, save_resolved round trips and config_hash."""
import copy
import pickle
import re
import textwrap
from pathlib import Path

import pytest

import trugrade
from trugrade import config as tgconfig
from trugrade.config import ConfigError, config_hash, load, save_resolved
from trugrade.config_schema import AUGMENTATIONS, PRESETS, SCHEMA, Section, reference_markdown

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted(CONFIGS.glob("*.yaml"))
EXPECTED_CONFIGS = ("fashion_mnist_cnn", "fashion_mnist_resnet18", "resnet34", "resnet50", "efficientnet_b0",
                    "densenet121", "vgg16", "vgg16_bn", "mobilenet_v3_small", "smallcnn", "marine_debris_unet_se")

MODEL = """\
model:
  arch: resnet18
  num_classes: 10
"""
MINIMAL = MODEL + "data:\n  path: /data/images\n"


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_of(text, marker, occurrence=1):
    """1-based line of the n-th line of `text` containing `marker`."""
    hits = [i for i, line in enumerate(textwrap.dedent(text).splitlines(), 1) if marker in line]
    return hits[occurrence - 1]


def load_error(path, overrides=(), preset=None):
    with pytest.raises(ConfigError) as info:
        load(path, overrides, preset)
    return str(info.value)


def assert_names(message, path, line, key):
    assert path.name in message, message
    assert re.search(rf"line {line}\b", message), f"expected line {line} in: {message}"
    assert key in message, message


# --------------------------------------------------------------------------- shipped configs


def test_every_expected_config_is_shipped():
    assert {p.stem for p in SHIPPED} >= set(EXPECTED_CONFIGS)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_loads_and_validates(path):
    cfg = load(path)
    assert cfg.run.name == path.stem
    assert cfg.model.arch in path.stem or cfg.model.arch in ("fashioncnn", "resnet18", "unet_se")
    assert cfg.train.epochs >= 1
    assert len(config_hash(cfg)) == 64


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_explains_its_choices(path):
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#"), "each config starts with a comment saying what it trains"
    for i, line in enumerate(lines):
        if not re.match(r"\s*(- )?[a-z_]+: \S", line) or "#" in line:
            continue
        explained_above = line.strip().startswith("params:") and "#" in lines[i - 1]
        assert explained_above, f"{path.name}, line {i + 1} has no comment: {line.strip()}"


def test_fashion_mnist_cnn_config():
    cfg = load(CONFIGS / "fashion_mnist_cnn.yaml")
    assert cfg.model.arch == "fashioncnn"
    assert cfg.data.path == "/usr/share/datasets/fashion-mnist"
    assert cfg.data.format == "idx"
    assert cfg.train.epochs == 3
    assert cfg.optim.name == "adamw"


def test_fashion_mnist_resnet18_says_it_is_adapted_to_28x28():
    text = (CONFIGS / "fashion_mnist_resnet18.yaml").read_text()
    cfg = load(CONFIGS / "fashion_mnist_resnet18.yaml")
    assert cfg.model.arch == "resnet18" and cfg.model.input_size == 28 and cfg.model.in_channels == 1
    assert "28x28" in text.split("model:")[0]


def test_marine_debris_config():
    cfg = load(CONFIGS / "marine_debris_unet_se.yaml")
    assert cfg.model.arch == "unet_se" and cfg.model.in_channels == 11 and cfg.model.num_classes == 2
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 1e-3 and cfg.optim.weight_decay == 1e-4
    assert cfg.schedule.name == "warmup_cosine" and cfg.schedule.warmup_epochs == 10
    assert cfg.data.batch_size == 16
    assert cfg.train.grad_clip_norm == 1.0
    assert dict(cfg.train.early_stopping) == {"metric": "val_f1", "patience": 15, "min_delta": 0.0, "mode": "max"}
    assert cfg.checkpoint.best_metric == "val_f1" and cfg.checkpoint.best_mode == "max"
    assert cfg.loss.name == "combined" and dict(cfg.loss.weights) == {"dice": 0.4, "focal": 0.4, "wce": 0.2}


# --------------------------------------------------------------------------- layering


def test_defaults_fill_every_key(tmp_path):
    cfg = load(write(tmp_path, MINIMAL))
    assert cfg.optim.name == "adamw" and cfg.optim.lr == 1e-3
    assert cfg.train.epochs == 10 and cfg.preset is None
    assert cfg.data.split.to_dict() == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert cfg.run.name == "run" and cfg.run.dir == "runs"
    assert cfg.checkpoint.best_mode == "min"  # auto for val_loss
    assert cfg.tracking.tensorboard is True and cfg.tracking.mlflow is False


@pytest.mark.parametrize("name, epochs", [("quick", 5), ("standard", 25), ("intensive", 50)])
def test_preset_epochs(tmp_path, name, epochs):
    assert PRESETS[name]["train"]["epochs"] == epochs
    assert load(write(tmp_path, MINIMAL + f"preset: {name}\n")).train.epochs == epochs
    assert load(write(tmp_path, MINIMAL), preset=name).train.epochs == epochs
    assert load(write(tmp_path, MINIMAL), [f"preset={name}"]).train.epochs == epochs


def test_merge_order_defaults_preset_file_overrides(tmp_path):
    base = MINIMAL + "preset: quick\n"
    assert load(write(tmp_path, base)).train.epochs == 5  # preset over defaults
    with_file = base + "train:\n  epochs: 7\n  seed: 3\n"
    cfg = load(write(tmp_path, with_file))
    assert cfg.train.epochs == 7 and cfg.train.seed == 3  # file over preset
    cfg = load(write(tmp_path, with_file), ["train.epochs=9"])
    assert cfg.train.epochs == 9 and cfg.train.seed == 3  # override over file, siblings kept
    cfg = load(write(tmp_path, with_file), ["train.epochs=9", "train.epochs=11"])
    assert cfg.train.epochs == 11  # later overrides win


def test_preset_choice_argument_over_file_and_override_over_argument(tmp_path):
    path = write(tmp_path, MINIMAL + "preset: quick\n")
    cfg = load(path, preset="intensive")
    assert cfg.train.epochs == 50 and cfg.preset == "intensive"
    cfg = load(path, ["preset=standard"], preset="intensive")
    assert cfg.train.epochs == 25 and cfg.preset == "standard"


def test_mappings_merge_and_lists_replace(tmp_path):
    path = write(tmp_path, MODEL + """\
data:
  path: /data/images
  split: {train: 0.6, val: 0.2, test: 0.2}
  augment:
    - name: hflip
    - name: vflip
""")
    cfg = load(path, ["data.split={train: 0.5, val: 0.3, test: 0.2}", "data.augment=[{name: rotate90}]"])
    assert cfg.data.split.to_dict() == {"train": 0.5, "val": 0.3, "test": 0.2}
    assert [a.name for a in cfg.data.augment] == ["rotate90"]
    cfg = load(path, ["data.split.val=0.1", "data.split.train=0.7"])
    assert cfg.data.split.to_dict() == {"train": 0.7, "val": 0.1, "test": 0.2}


def test_overrides_are_typed_as_yaml_scalars(tmp_path):
    cfg = load(write(tmp_path, MINIMAL), [
        "optim.lr=0.01", "data.batch_size=64", "train.bf16=true", "optim.betas=[0.8, 0.99]",
        "train.grad_clip_norm=2", "model.input_size=[32, 48]", "run.name=trial-1", "optim.eps=1e-6",
        "train.class_weights=auto", "data.oversample={3: 2, cat: 1.5}", "model.pretrained=null"])
    assert cfg.optim.lr == 0.01 and isinstance(cfg.optim.lr, float)
    assert cfg.data.batch_size == 64 and isinstance(cfg.data.batch_size, int)
    assert cfg.train.bf16 is True
    assert cfg.optim.betas == (0.8, 0.99)
    assert cfg.train.grad_clip_norm == 2.0 and isinstance(cfg.train.grad_clip_norm, float)
    assert cfg.model.input_size == (32, 48)
    assert cfg.run.name == "trial-1"
    assert cfg.optim.eps == 1e-6
    assert cfg.train.class_weights == "auto"
    assert cfg.data.oversample.to_dict() == {"3": 2.0, "cat": 1.5}
    assert cfg.model.pretrained is None


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    cfg = load(write(tmp_path, MINIMAL + "optim:\n  lr: 1e-3\n  eps: 1E-8\nschedule:\n  min_lr: 5e-5\n"))
    assert cfg.optim.lr == 1e-3 and cfg.optim.eps == 1e-8 and cfg.schedule.min_lr == 5e-5


def test_yaml_anchors_and_merge_keys_work(tmp_path):
    cfg = load(write(tmp_path, """\
        model: &base
          arch: resnet18
          num_classes: 3
        data:
          path: /data
        optim:
          param_groups:
            - &group {pattern: "head.*", lr: 0.01}
            - {<<: *group, pattern: "stem.*"}
        """))
    assert [g.to_dict() for g in cfg.optim.param_groups] == [{"pattern": "head.*", "lr": 0.01},
                                                             {"pattern": "stem.*", "lr": 0.01}]


def test_from_mapping_validates_like_a_file():
    cfg = tgconfig.from_mapping({"model": {"arch": "vgg16", "num_classes": 2}, "data": {"path": "x"}},
                                ["optim.name=sgd"], preset="quick")
    assert cfg.model.arch == "vgg16" and cfg.optim.name == "sgd" and cfg.train.epochs == 5
    with pytest.raises(ConfigError, match=r"<mapping>: model\.arch: not an allowed value"):
        tgconfig.from_mapping({"model": {"arch": "vgg17", "num_classes": 2}, "data": {"path": "x"}})


# --------------------------------------------------------------------------- errors


def test_config_error_is_a_trugrade_error_and_a_value_error():
    assert issubclass(ConfigError, trugrade.TrugradeError) and issubclass(ConfigError, ValueError)
    assert trugrade.ConfigError is ConfigError


def test_unknown_key_says_did_you_mean(tmp_path):
    text = MINIMAL + "optim:\n  name: sgd\n  lrr: 0.1\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "lrr"), "optim.lrr")
    assert "unknown key" in message and "did you mean 'lr'?" in message
    assert "momentum" in message  # lists the allowed keys


def test_unknown_section_says_did_you_mean(tmp_path):
    text = MINIMAL + "optimizer:\n  lr: 0.1\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "optimizer"), "optimizer")
    assert "did you mean 'optim'?" in message


def test_wrong_type(tmp_path):
    text = MINIMAL.replace("data:\n", "data:\n  batch_size: lots\n")
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "batch_size"), "data.batch_size")
    assert "wrong type" in message and "an integer" in message and "'lots'" in message


def test_bool_is_not_an_integer(tmp_path):
    message = load_error(write(tmp_path, MINIMAL), ["data.batch_size=true"])
    assert "override 'data.batch_size=true'" in message and "wrong type" in message


def test_out_of_range(tmp_path):
    text = MINIMAL + "optim:\n  lr: 0\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "lr:"), "optim.lr")
    assert "out of range" in message and "> 0" in message


def test_not_an_allowed_value(tmp_path):
    text = MINIMAL.replace("resnet18", "resnet19")
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "resnet19"), "model.arch")
    assert "not one of" in message and "efficientnet_b0" in message and "did you mean 'resnet18'?" in message


def test_missing_required_key_points_at_its_section(tmp_path):
    text = "model:\n  arch: resnet18\ndata:\n  path: /x\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "model:"), "model.num_classes")
    assert "missing required key" in message and "an integer" in message


def test_missing_required_section(tmp_path):
    message = load_error(write(tmp_path, "model:\n  arch: resnet18\n  num_classes: 2\n"))
    assert "run.yaml" in message and "data.path" in message and "missing required key" in message


def test_errors_inside_list_items_name_the_item_line(tmp_path):
    text = MODEL + """\
data:
  path: /data
  augment:
    - name: hflip
    - name: rotate
      params: {degrees: 10, p: 1.5}
    - name: hflp
"""
    message = load_error(write(tmp_path, text))
    assert "2 problems" in message
    assert re.search(rf"line {line_of(text, 'params:')}: data\.augment\[1\]\.params\.p: out of range", message)
    assert re.search(rf"line {line_of(text, 'hflp')}: data\.augment\[2\]\.name: not an allowed value", message)
    assert "did you mean 'hflip'?" in message


def test_all_problems_are_reported_in_line_order(tmp_path):
    text = "model:\n  arch: vgg\n  num_classes: -1\ndata:\n  path: /x\n  batch_size: 1.5\ntrain:\n  epochs: 0\n"
    message = load_error(write(tmp_path, text))
    assert message.startswith("4 problems in the config")
    lines = [int(n) for n in re.findall(r"line (\d+):", message)]
    assert lines == [2, 3, 6, 8]


def test_duplicate_key(tmp_path):
    text = "model:\n  arch: resnet18\n  num_classes: 2\n  arch: vgg16\ndata:\n  path: /x\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", 4, "model.arch")
    assert "duplicate key" in message and "line 2" in message


@pytest.mark.parametrize("text, line", [
    ("model:\n  arch: resnet18\n num_classes: 10\ndata:\n  path: x\n", 3),  # bad indentation
    ("model:\n  arch: resnet18\n\tnum_classes: 10\n", 3),                   # a tab
    ("model:\n  arch: resnet18\n  num_classes: 10: 3\n", 3),                 # a second colon
    ("data:\n  path: x\n  augment: [{name: hflip}\nmodel: {}\n", 4),         # unclosed flow list
])
def test_yaml_syntax_error_names_file_and_line(tmp_path, text, line):
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line, "YAML syntax error")


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "top level must be a mapping"),
    ("just words\n", "top level must be a mapping"),
    ("model: 5\ndata: {path: x}\n", "model: wrong type"),
    ("model:\n  arch: [resnet18]\n  num_classes: 2\ndata: {path: x}\n", "model.arch: wrong type"),
    ("model:\n  ~: 3\n", "unknown key 'None'"),
    ("? [a]\n: 1\n", "a key must be a plain word"),
    ("model: !!python/object:os.system {}\n", "unsupported YAML tag"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: !!binary aGVsbG8=}\n", "wrong type"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: 2024-01-01}\n", "got a date"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x, split: null}\n", "data.split: wrong type"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x, augment: [{params: {}}]}\n", "missing required key"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x, augment: [hflip]}\n", "wrong type"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x, augment: [{name: hflip, p: 1}]}\n", "unknown key 'p'"),
    ("model: {arch: resnet18, num_classes: 2, input_size: [1, 2, 3]}\ndata: {path: x}\n", "exactly 2"),
    ("model: {arch: resnet18, num_classes: 2, dropout: .nan}\ndata: {path: x}\n", "finite"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: '  '}\n", "empty string"),
    ("model: {arch: resnet18, num_classes: 2, pretrained: w.pt}\ndata: {path: x}\n", ".safetensors"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x, oversample: {1: 2, '1': 3}}\n", "duplicate key"),
    ("model: {arch: resnet18, num_classes: 2}\ndata: {path: x}\nrun: {name: 'a b'}\n", "run.name"),
    ("\xff\xfe", "not UTF-8"),
])
def test_malformed_configs_raise_config_error_only(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text.encode("latin-1"))
    message = load_error(path)
    assert "bad.yaml" in message and expected in message, message


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "absent.yaml")
    assert "absent.yaml" in message and "not found" in message


@pytest.mark.parametrize("override, expected", [
    ("optim.lr", "no '='"),
    ("=0.1", "not a dotted key"),
    ("optim..lr=0.1", "not a dotted key"),
    ("optim lr=0.1", "not a dotted key"),
    ("optim.lr=", "no value after '='"),
    ("optim.lr=[0.1,", "not valid YAML"),
    ("optim.lr={a: 1", "not valid YAML"),
])
def test_bad_override_syntax(tmp_path, override, expected):
    message = load_error(write(tmp_path, MINIMAL), [override])
    assert f"override '{override}'" in message and "bad override syntax" in message and expected in message


def test_override_errors_name_the_override_not_a_line(tmp_path):
    path = write(tmp_path, MINIMAL)
    message = load_error(path, ["optim.lrr=0.1"])
    assert "override 'optim.lrr=0.1'" in message and "did you mean 'lr'?" in message
    assert "line" not in message.split("(keys allowed")[0]
    message = load_error(path, ["optim.lr=-1"])
    assert "override 'optim.lr=-1': optim.lr: out of range" in message
    message = load_error(path, ["preset=quik"])
    assert "override 'preset=quik'" in message and "did you mean 'quick'?" in message
    message = load_error(path, ["optim.lr.x=1"])
    assert "override 'optim.lr.x=1': optim.lr: wrong type" in message
    with pytest.raises(ConfigError, match="bad override syntax"):
        load(path, [0.1])


def test_unknown_preset_in_the_file_and_argument(tmp_path):
    text = MINIMAL + "preset: quik\n"
    message = load_error(write(tmp_path, text))
    assert_names(message, tmp_path / "run.yaml", line_of(text, "preset"), "preset")
    assert "did you mean 'quick'?" in message
    assert "load(preset='fast')" in load_error(write(tmp_path, MINIMAL), preset="fast")


@pytest.mark.parametrize("extra, key, marker, expected", [
    ("data:\n  path: x\n  split: {train: 0.8, val: 0.3, test: 0.1}\n", "data.split", "split:", "add up to 1"),
    ("model:\n  arch: fpn\n  num_classes: 2\n", "model.encoder", "model:", "needs a backbone"),
    ("model:\n  arch: unet\n  num_classes: 2\n  encoder: resnet18\n", "model.encoder", "encoder:",
     "takes no encoder"),
    ("optim:\n  name: adamw\n  nesterov: true\n", "optim.nesterov", "nesterov:", "needs optim.name sgd"),
    ("schedule:\n  name: multistep\n", "schedule.milestones", "schedule:", "at least one epoch"),
    ("schedule:\n  name: multistep\n  milestones: [5, 3]\n", "schedule.milestones", "milestones:",
     "strictly increasing"),
    ("schedule:\n  name: warmup_cosine\n  warmup_epochs: 10\n", "schedule.warmup_epochs", "warmup_epochs:",
     "no cosine phase"),
    ("schedule:\n  min_lr: 0.5\n", "schedule.min_lr", "min_lr:", "below optim.lr"),
    ("loss:\n  name: combined\n", "loss.weights", "loss:", "combined needs weights"),
    ("loss:\n  name: focal\n  weights: {dice: 1}\n", "loss.weights", "weights:",
     "only read when loss.name is combined"),
    ("train:\n  class_weights: [1, 2]\n", "train.class_weights", "class_weights:",
     "2 weights for model.num_classes 10"),
    ("data:\n  path: x\n  augment:\n    - {name: normalize, params: {mean: [0.5], std: [0.5]}}\n",
     "data.augment[0].params.mean", "normalize", "1 values for model.in_channels 3"),
    ("data:\n  path: x\n  augment:\n    - {name: random_resized_crop, params: {size: 8, scale: [0.9, 0.1]}}\n",
     "data.augment[0].params.scale", "random_resized_crop", "min > max"),
])
def test_rules_across_keys(tmp_path, extra, key, marker, expected):
    sections = {"model": MODEL, "data": "data:\n  path: /x\n"}
    sections[extra.split(":")[0]] = extra
    text = "".join(sections.values())
    message = load_error(write(tmp_path, text))
    assert key in message and expected in message, message
    assert_names(message, tmp_path / "run.yaml", line_of(text, marker), key)


def test_no_raw_exceptions_from_odd_overrides(tmp_path):
    path = write(tmp_path, MINIMAL)
    for override in ["model=3", "model.arch={}", "data=[]", "data.augment=[1, 2]", "data.augment={}",
                     "train.early_stopping=5", "train.early_stopping.patience=x", "loss.weights=[1]",
                     "data.oversample=[1]", "optim.param_groups=[{pattern: a}]", "x.y.z=1", "run=null"]:
        with pytest.raises(ConfigError):
            load(path, [override])


# --------------------------------------------------------------------------- Config


def test_config_is_a_read_only_mapping_with_attribute_access(tmp_path):
    cfg = load(write(tmp_path, MINIMAL))
    assert cfg.optim.lr == cfg["optim"]["lr"] == cfg.to_dict()["optim"]["lr"]
    assert set(cfg) == set(SCHEMA.fields) and len(cfg) == len(SCHEMA.fields) and "optim" in cfg
    assert cfg.get("nothing") is None
    with pytest.raises(AttributeError, match="read-only"):
        cfg.optim.lr = 1.0
    with pytest.raises(TypeError):
        cfg["optim"] = {}
    with pytest.raises(AttributeError, match="did you mean 'lr'"):
        cfg.optim.lrr
    with pytest.raises(KeyError, match="did you mean 'optim'"):
        cfg["optimm"]
    assert not hasattr(cfg, "nothing")
    mutable = cfg.to_dict()
    mutable["optim"]["lr"] = 5.0
    assert cfg.optim.lr == 1e-3
    assert isinstance(cfg.optim.betas, tuple) and isinstance(mutable["optim"]["betas"], list)


def test_config_pickles_and_copies(tmp_path):
    cfg = load(CONFIGS / "marine_debris_unet_se.yaml")
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert copy.deepcopy(cfg) == cfg
    assert cfg == cfg.to_dict()


# --------------------------------------------------------------------------- save_resolved and config_hash


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_save_resolved_round_trips(tmp_path, path):
    cfg = load(path, ["train.seed=7"])
    out = tmp_path / "resolved.yaml"
    save_resolved(cfg, out)
    again = load(out)
    # run.name is resolved from the original file name, so it survives the new file name
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(cfg) in out.read_text()


def test_config_hash_stable_and_sensitive(tmp_path):
    text = MINIMAL + "optim:\n  lr: 0.01\n  name: sgd\n"
    reordered = "optim:\n  name: sgd\n  lr: 0.01\n" + MINIMAL
    first = config_hash(load(write(tmp_path, text)))
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert config_hash(load(write(tmp_path, text))) == first
    assert config_hash(load(write(tmp_path, reordered))) == first  # key order does not matter
    assert config_hash(load(write(tmp_path, text), ["optim.lr=0.01"])) == first  # same values
    assert config_hash(load(write(tmp_path, text), ["optim.lr=0.011"])) != first
    assert config_hash(load(write(tmp_path, text), ["data.augment=[{name: hflip}]"])) != first
    assert config_hash(load(write(tmp_path, text), ["tracking.mlflow=true"])) != first
    assert config_hash(load(write(tmp_path, text)).to_dict()) == first  # a plain dict hashes the same


def test_config_hash_of_a_non_json_value_is_a_config_error():
    with pytest.raises(ConfigError, match="JSON"):
        config_hash({"a": object()})


# --------------------------------------------------------------------------- documentation


def _schema_keys(section, path=""):
    for name, field in section.fields.items():
        key = f"{path}.{name}" if path else name
        yield key
        spec = getattr(field.spec, "inner", field.spec)
        if isinstance(spec, Section):
            yield from _schema_keys(spec, key)


def test_reference_documents_every_key_and_augmentation():
    text = reference_markdown()
    for key in _schema_keys(SCHEMA):
        assert f"`{key}`" in text, key
    for name in AUGMENTATIONS:
        assert f"`{name}`" in text
