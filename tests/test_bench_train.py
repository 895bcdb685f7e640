"""The training benchmarks: the train section's one-line JSON (float32 and bf16), the
section parser (ops keeps working), and the PyTorch twins in bench/ being the same
architectures as the zoo's (parameter counts), runnable for a couple of steps."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trugrade import models
from trugrade.bench import __main__ as bench_main
from trugrade.bench import train as bench_train
from trugrade.bench.common import torch_environment

REPO = Path(__file__).resolve().parents[1]


def _bench(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "trugrade.bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_train_section_prints_one_json_line():
    proc = _bench("train", "--arch", "smallcnn", "--in-channels", "1", "--size", "28", "--batch", "16",
                  "--steps", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["arch"] == "smallcnn" and result["batch"] == 16 and result["steps"] == 3
    assert result["images_per_second"] > 0 and result["first_step_seconds"] > 0
    assert result["peak_rss_mb"] > result["planned_mb"] > 0


def test_train_bf16_runs_and_says_so():
    proc = _bench("train", "--arch", "smallcnn", "--in-channels", "1", "--size", "28", "--batch", "16",
                  "--steps", "3", "--bf16", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["bf16"] is True and result["images_per_second"] > 0


def test_sections_take_their_own_options():
    with pytest.raises(SystemExit):
        bench_main.main(["nosuchsection"])
    with pytest.raises(SystemExit):
        bench_main.main(["ops", "--arch", "resnet18"])  # train's options are not ops'
    proc = _bench("train", "--help")
    assert proc.returncode == 0 and "--compare" in proc.stdout and "--quick" in proc.stdout


def test_standard_set_is_the_documented_one():
    assert [(a, c, s, b) for a, c, s, b, _ in bench_train.STANDARD] == [
        ("smallcnn", 1, 28, 128), ("resnet18", 3, 32, 128), ("resnet18", 3, 224, 16), ("efficientnet_b0", 3, 224, 8)]


def _torch_twins():
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("torch_models_bench", REPO / "bench" / "torch_models_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("arch,channels,size,classes", [
    ("smallcnn", 1, 28, 10), ("fashioncnn", 1, 28, 10), ("resnet18", 3, 32, 10), ("resnet18", 3, 224, 10),
    ("efficientnet_b0", 3, 224, 10), ("unet_se", 11, 256, 2), ("unet", 3, 64, 3)])
def test_torch_twins_match_the_zoo(arch, channels, size, classes):
    twin = _torch_twins().build(arch, classes, channels, size)
    ours = models.create(arch, num_classes=classes, in_channels=channels, input_size=size)
    assert sum(p.numel() for p in twin.parameters()) == ours.parameter_count()
    if arch in ("unet", "unet_se"):  # the same names and shapes: trugrade's weights load into the twin strictly
        twin.load_state_dict({k: _torch().from_numpy(v.copy()) for k, v in ours.state_dict().items()})


def _torch():
    return pytest.importorskip("torch")


def test_compare_set_has_the_unet_se_row_and_takes_one_configuration():
    parser = bench_main.argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    bench_train.add_arguments(parser)
    standard = bench_train.compare_set(parser.parse_args(["--compare"]))
    assert ("unet_se", 11, 256, 4, 2, 2, False) in standard
    assert [row[:4] for row in standard if row[0] != "unet_se"] == [row[:4] for row in bench_train.STANDARD]
    one = bench_train.compare_set(parser.parse_args(["--arch", "unet_se", "--in-channels", "11", "--size", "256",
                                                     "--batch", "4", "--classes", "2", "--compare"]))
    assert one == [("unet_se", 11, 256, 4, 3, 2, False)]


def test_train_section_times_a_segmentation_model_on_masks():
    result = bench_train.measure("unet", 3, 32, 2, 1, classes=3)
    assert result["images_per_second"] > 0 and result["peak_rss_mb"] > 0 and result["loss"] > 0


def test_predict_section_both_sides_agree():
    _torch()
    proc = _bench("predict", "--arch", "unet", "--in-channels", "3", "--classes", "3", "--size", "32", "--tiles", "1",
                  "--predict-batch", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["trugrade"]["tile_seconds"] > 0 and result["torch"]["tile_seconds"] > 0
    assert result["torch"]["max_prob_difference"] < 1e-4   # the same weights give the same probability maps


def test_torch_train_twin_runs():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "torch_train.py"), "smallcnn", "1", "28", "8", "2"],
                          env=torch_environment(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["images_per_second"] > 0 and result["peak_rss_mb"] > 0 and not result["bf16"]
