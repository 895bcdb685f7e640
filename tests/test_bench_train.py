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


@pytest.mark.parametrize("arch,channels,size", [("smallcnn", 1, 28), ("fashioncnn", 1, 28), ("resnet18", 3, 32),
                                                ("resnet18", 3, 224), ("efficientnet_b0", 3, 224)])
def test_torch_twins_match_the_zoo(arch, channels, size):
    twin = _torch_twins().build(arch, 10, channels, size)
    ours = models.create(arch, num_classes=10, in_channels=channels, input_size=size)
    assert sum(p.numel() for p in twin.parameters()) == ours.parameter_count()


def test_torch_train_twin_runs():
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "torch_train.py"), "smallcnn", "1", "28", "8", "2"],
                          env=torch_environment(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["images_per_second"] > 0 and result["peak_rss_mb"] > 0 and not result["bf16"]
