"""The model registry: registration with hashes, refusal of tampered files, search, activation and
rollback, comparison and A/B evaluation, packages, hot swap and concurrent registration."""
import hashlib
import json
import multiprocessing
import os
import threading
import time
import zipfile

import numpy as np
import pytest

import trugrade
from trugrade import cli, config, models, safetensors, tracking
from trugrade import registry as registry_module
from trugrade.registry import Predictor, Registry, RegistryError

SHAPE = dict(num_classes=3, in_channels=1, input_size=28)
BATCH = 2  # forward batch used throughout (any size works; small keeps the tests fast)


def make_checkpoint(path, seed, metadata=None):
    model = models.create("smallcnn", seed=seed, **SHAPE)
    safetensors.save(path, model.state_dict(), metadata=metadata)
    return model


def logits(model, x):
    return np.concatenate([model.forward(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def images(count=8, seed=0):
    return np.random.default_rng(seed).random((count, 1, 28, 28), dtype=np.float32)


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "registry")


@pytest.fixture
def checkpoints(tmp_path):
    """Three checkpoints of smallcnn (seeds 1, 2, 3) describing themselves in their metadata."""
    metadata = {"arch": "smallcnn", "num_classes": "3", "in_channels": "1", "input_size": "28",
                "classes": json.dumps(["cat", "dog", "bird"]),
                "normalization": json.dumps({"mean": [0.5], "std": [0.25]})}
    found = []
    for seed in (1, 2, 3):
        path = tmp_path / f"ckpt{seed}.safetensors"
        found.append((path, make_checkpoint(path, seed, metadata)))
    return found


def test_register_copies_with_hash_and_metadata(registry, checkpoints):
    path, model = checkpoints[0]
    entry = registry.register(path, "pets", task="pets-photo", metrics={"val_accuracy": 0.9}, dataset_hash="abc")
    assert (entry.name, entry.version, entry.task, entry.architecture) == ("pets", 1, "pets-photo", "smallcnn")
    assert (entry.num_classes, entry.in_channels, entry.input_size) == (3, 1, 28)
    assert entry.classes == ["cat", "dog", "bird"]
    assert entry.normalization == {"mean": [0.5], "std": [0.25]}
    assert entry.metrics == {"val_accuracy": 0.9} and entry.dataset_hash == "abc"
    assert entry.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry.size_bytes == path.stat().st_size
    assert os.path.dirname(entry.path).startswith(registry.root) and entry.path != str(path)
    os.unlink(path)  # the registry holds its own copy
    loaded = registry.load("pets", 1)
    x = images()
    assert np.array_equal(logits(loaded, x), logits(model, x))
    second = registry.register(checkpoints[1][0], "pets")
    assert second.version == 2 and second.task == "pets"
    assert registry.get("pets").version == 2
    assert [v.ref for v in registry.versions("pets")] == ["pets:1", "pets:2"]


def test_register_from_arguments_and_run_folder(registry, tmp_path):
    path = tmp_path / "bare.safetensors"
    make_checkpoint(path, 5)
    with pytest.raises(RegistryError, match="does not give architecture, num_classes, in_channels, input_size"):
        registry.register(path, "bare")
    cfg = config.from_mapping({"model": {"arch": "smallcnn", **SHAPE}, "data": {
        "path": "d", "augment": [{"name": "normalize", "params": {"mean": [0.2], "std": [0.3]}}]}})
    with tracking.RunRecorder(tmp_path / "runs" / "exp7", cfg, dataset_manifest_hash="f" * 64) as recorder:
        recorder.log_metrics(step=1, epoch=0, loss=2.0)
        recorder.log_metrics(epoch=0, val_loss=1.0, val_accuracy=0.5)
        recorder.log_metrics(epoch=1, val_loss=0.8, val_accuracy=0.7)
    entry = registry.register(path, "bare", run=tmp_path / "runs" / "exp7", metrics={"test_accuracy": 0.66})
    assert (entry.architecture, entry.num_classes, entry.in_channels, entry.input_size) == ("smallcnn", 3, 1, 28)
    assert entry.run == "exp7" and entry.dataset_hash == "f" * 64
    assert entry.metrics == {"val_loss": 0.8, "val_accuracy": 0.7, "test_accuracy": 0.66}
    assert entry.normalization == {"mean": [0.2], "std": [0.3]}
    assert entry.config == cfg.to_dict() and entry.config_hash == config.config_hash(cfg)
    assert entry.classes == ["0", "1", "2"]


def test_register_refuses_weights_that_do_not_fit(registry, tmp_path):
    path = tmp_path / "c.safetensors"
    make_checkpoint(path, 1)
    with pytest.raises(RegistryError, match="do not fit smallcnn .num_classes 4"):
        registry.register(path, "wrong", architecture="smallcnn", num_classes=4, in_channels=1, input_size=28)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(RegistryError, match="not a readable safetensors file"):
        registry.register(tmp_path / "junk.safetensors", "junk", architecture="smallcnn", **SHAPE)
    with pytest.raises(RegistryError, match="must start with a letter or digit"):
        registry.register(path, "../escape", architecture="smallcnn", **SHAPE)
    assert registry.versions() == []
    assert os.listdir(os.path.join(registry.root, "models")) == []


def test_registry_folder_from_argument_environment_and_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TRUGRADE_REGISTRY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry_module.default_root() == str(tmp_path / "home" / ".trugrade" / "registry")
    cfg = config.from_mapping({"model": {"arch": "smallcnn", **SHAPE}, "data": {"path": "d"},
                               "registry": {"path": str(tmp_path / "from_config")}})
    assert Registry(config=cfg).root == str(tmp_path / "from_config")
    monkeypatch.setenv("TRUGRADE_REGISTRY", str(tmp_path / "from_env"))
    assert Registry().root == str(tmp_path / "from_env")
    assert Registry(config=cfg).root == str(tmp_path / "from_env")
    assert Registry(tmp_path / "explicit").root == str(tmp_path / "explicit")
    assert os.path.isfile(tmp_path / "from_env" / "registry.sqlite")


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "delete"])
def test_tampered_or_truncated_weights_are_refused(registry, checkpoints, damage):
    entry = registry.register(checkpoints[0][0], "pets")
    registry.activate(entry)
    data = bytearray(open(entry.path, "rb").read())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01  # one bit of one weight: still a valid safetensors file
    elif damage == "truncate":
        data = data[:len(data) - 100]
    elif damage == "append":
        data += b"\0"
    if damage == "delete":
        os.unlink(entry.path)
    else:
        with open(entry.path, "wb") as handle:
            handle.write(data)
    expected = "is missing" if damage == "delete" else "was modified or truncated and is not loaded"
    for attempt in (lambda: registry.load("pets", 1), lambda: registry.load_active("pets"),
                    lambda: Predictor(registry, "pets", batch_size=BATCH).predict(images(2)),
                    lambda: registry.export("pets", registry.root + "/x.tgpkg", version=1),
                    lambda: registry.activate("pets", 1, task="other")):
        with pytest.raises(RegistryError, match=expected):
            attempt()
    assert isinstance(RegistryError("x"), trugrade.TrugradeError) and isinstance(RegistryError("x"), ValueError)


def test_search_filters(registry, checkpoints, tmp_path):
    registry.register(checkpoints[0][0], "a", task="t1", metrics={"val_accuracy": 0.7})
    registry.register(checkpoints[1][0], "a", task="t1", metrics={"val_accuracy": 0.9})
    registry.register(checkpoints[2][0], "b", task="t2", metrics={"val_loss": 0.3})
    refs = lambda found: [v.ref for v in found]  # noqa: E731
    assert refs(registry.search()) == ["a:1", "a:2", "b:1"]
    assert refs(registry.search(task="t1")) == ["a:1", "a:2"]
    assert refs(registry.search(architecture="smallcnn", name="b")) == ["b:1"]
    assert refs(registry.search(architecture="resnet18")) == []
    assert refs(registry.search(metric="val_accuracy", min_value=0.8)) == ["a:2"]
    assert refs(registry.search(metric="val_accuracy", max_value=0.8)) == ["a:1"]
    assert refs(registry.search(metric="val_loss", max_value=0.5)) == ["b:1"]
    created = registry.get("a", 2).created_at
    assert refs(registry.search(since=created)) == ["a:2", "b:1"]
    assert refs(registry.search(until=created)) == ["a:1", "a:2"]
    assert refs(registry.search(since="2999-01-01")) == []
    assert refs(registry.search(until="2000-01-01")) == []
    with pytest.raises(RegistryError, match="not an ISO 8601 date"):
        registry.search(since="yesterday")
    with pytest.raises(RegistryError, match="need metric="):
        registry.search(min_value=0.5)
    with pytest.raises(RegistryError, match="has no version 9 .versions: 1, 2"):
        registry.get("a", 9)
    with pytest.raises(RegistryError, match="no model named 'c' .models: a, b"):
        registry.get("c")


def test_activate_and_rollback_keep_every_version(registry, checkpoints):
    entries = [registry.register(path, "pets", task="pets") for path, _ in checkpoints]
    x = images()
    expected = [logits(model, x) for _, model in checkpoints]
    with pytest.raises(RegistryError, match="task 'pets' has no active version"):
        registry.load_active("pets")
    for entry in entries:
        registry.activate(entry)
    assert registry.active("pets").ref == "pets:3"
    assert np.array_equal(logits(trugrade.registry.load_active("pets", registry.root), x), expected[2])
    registry.activate("pets", 3)  # already active: no new stack entry
    assert registry.rollback("pets").ref == "pets:2"
    assert np.array_equal(logits(registry.load_active("pets"), x), expected[1])
    assert registry.rollback("pets").ref == "pets:1"
    with pytest.raises(RegistryError, match="no earlier version to roll back to"):
        registry.rollback("pets")
    with pytest.raises(RegistryError, match="task 'nothing' has no active version"):
        registry.rollback("nothing")
    assert all(os.path.isfile(entry.path) for entry in entries)
    assert len(registry.versions("pets")) == 3
    assert [(h["action"], h["version"], h["previous"]) for h in registry.history("pets")] == [
        ("activate", "pets:1", None), ("activate", "pets:2", "pets:1"), ("activate", "pets:3", "pets:2"),
        ("rollback", "pets:2", "pets:3"), ("rollback", "pets:1", "pets:2")]
    registry.activate("pets", 3, task="pets-night")
    assert {task: v.ref for task, v in registry.tasks().items()} == {"pets": "pets:1", "pets-night": "pets:3"}


def test_compare_versions_side_by_side(registry, checkpoints):
    registry.register(checkpoints[0][0], "pets", metrics={"val_accuracy": 0.7, "val_loss": 0.4})
    registry.register(checkpoints[1][0], "pets", metrics={"val_accuracy": 0.8})
    table = registry.compare(["pets:1", ("pets", 2)], batch_size=BATCH, repeats=2)
    assert table["columns"] == ["version", "task", "architecture", "parameters", "size_bytes",
                                f"forward_ms (batch {BATCH})", "val_accuracy", "val_loss"]
    first, second = table["rows"]
    assert first[:5] == ["pets:1", "pets", "smallcnn", checkpoints[0][1].parameter_count(),
                         checkpoints[0][0].stat().st_size]
    assert first[5] > 0 and second[5] > 0
    assert first[6:] == [0.7, 0.4] and second[6:] == [0.8, None]


def test_ab_test_paired_bootstrap(registry, checkpoints):
    a = registry.register(checkpoints[0][0], "pets")
    b = registry.register(checkpoints[1][0], "pets")
    x = images(40, seed=3)
    predictions_b = registry.predict(b, x, batch_size=BATCH).argmax(axis=1)
    predictions_a = registry.predict(a, x, batch_size=BATCH).argmax(axis=1)
    # normalization (x - 0.5) / 0.25 is applied for the version before its forward
    direct = logits(registry.load(a), (x - np.float32(0.5)) / np.float32(0.25)).argmax(axis=1)
    assert np.array_equal(predictions_a, direct)
    labels = predictions_b.copy()  # b is right everywhere
    result = registry.ab_test(a, b, x, labels, n_bootstrap=500, seed=7, batch_size=BATCH)
    accuracy_a = float((predictions_a == labels).mean())
    assert result["accuracy_b"] == 1.0 and result["accuracy_a"] == accuracy_a
    assert result["difference"] == pytest.approx(1.0 - accuracy_a)
    low, high = result["ci95"]
    assert low <= result["difference"] <= high
    # the same paired bootstrap, written out
    rng = np.random.default_rng(7)
    diff = (predictions_b == labels).astype(float) - (predictions_a == labels).astype(float)
    means = diff[rng.integers(0, 40, size=(500, 40))].mean(axis=1)
    assert (low, high) == tuple(np.percentile(means, [2.5, 97.5]))
    assert result["significant"] == (low > 0)
    assert registry.ab_test(a, b, x, labels, n_bootstrap=500, seed=7, batch_size=BATCH) == result
    same = registry.ab_test(a, a, x, labels, n_bootstrap=200, batch_size=BATCH)
    assert same["difference"] == 0.0 and same["ci95"] == (0.0, 0.0) and not same["significant"]
    with pytest.raises(RegistryError, match="one label per image"):
        registry.ab_test(a, b, x, labels[:-1], batch_size=BATCH)
    with pytest.raises(RegistryError, match="has 3 classes"):
        registry.ab_test(a, b, x, labels + 3, batch_size=BATCH)


def test_export_and_import_package(registry, checkpoints, tmp_path):
    entry = registry.register(checkpoints[0][0], "pets", task="pets-photo", metrics={"val_accuracy": 0.9},
                              dataset_hash="abc")
    package = registry.export("pets", tmp_path / "pets-1.tgpkg", version=1)
    with zipfile.ZipFile(package) as archive:
        assert set(archive.namelist()) == {"manifest.json", "weights.safetensors", "config.json", "classes.json",
                                           "normalization.json", "metrics.json"}
        manifest = json.loads(archive.read("manifest.json"))
        assert manifest["model"]["sha256"] == entry.sha256
        assert json.loads(archive.read("classes.json")) == ["cat", "dog", "bird"]
    other = Registry(tmp_path / "other")
    other.register(checkpoints[1][0], "pets")  # the other installation already has a pets:1
    imported = other.import_package(package)
    assert imported.ref == "pets:2" and imported.sha256 == entry.sha256
    for key in ("task", "architecture", "num_classes", "in_channels", "input_size", "classes", "normalization",
                "metrics", "dataset_hash", "size_bytes"):
        assert getattr(imported, key) == getattr(entry, key), key
    assert imported.source["name"] == "pets" and imported.source["version"] == 1
    x = images()
    assert np.array_equal(logits(other.load(imported), x), logits(checkpoints[0][1], x))
    renamed = other.import_package(package, name="pets-copy", task="t")
    assert renamed.ref == "pets-copy:1" and renamed.task == "t"


def _rewrite_package(source, target, change):
    with zipfile.ZipFile(source) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    change(files)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def _flip_weight(files):
    weights = bytearray(files["weights.safetensors"])
    weights[-10] ^= 0xFF
    files["weights.safetensors"] = bytes(weights)


def _forge_manifest(files):
    """Weights changed AND the manifest's file entry updated: only the model hash catches it."""
    _flip_weight(files)
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["weights.safetensors"]["sha256"] = hashlib.sha256(files["weights.safetensors"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()


@pytest.mark.parametrize("corruption, message", [
    ("flip_weight", "weights.safetensors has SHA-256 .* the package is corrupted"),
    ("forge_manifest", "manifest's model SHA-256 does not match"),
    ("edit_classes", "classes.json has SHA-256"),
    ("no_manifest", "no manifest.json"),
    ("truncate", "corrupted or not a zip file"),
    ("not_zip", "corrupted or not a zip file"),
    ("missing", "no such package file"),
])
def test_corrupted_package_registers_nothing(registry, checkpoints, tmp_path, corruption, message):
    registry.register(checkpoints[0][0], "pets")
    package = registry.export("pets", tmp_path / "pets.tgpkg", version=1)
    bad = tmp_path / "bad.tgpkg"
    if corruption == "flip_weight":
        _rewrite_package(package, bad, _flip_weight)
    elif corruption == "forge_manifest":
        _rewrite_package(package, bad, _forge_manifest)
    elif corruption == "edit_classes":
        _rewrite_package(package, bad, lambda files: files.update({"classes.json": b'["a", "b", "c"]'}))
    elif corruption == "no_manifest":
        _rewrite_package(package, bad, lambda files: files.pop("manifest.json"))
    elif corruption == "truncate":
        bad.write_bytes(open(package, "rb").read()[:5000])
    elif corruption == "not_zip":
        bad.write_bytes(b"hello")
    other = Registry(tmp_path / "other")
    with pytest.raises(RegistryError, match=message):
        other.import_package(bad)
    assert other.versions() == []
    assert os.listdir(os.path.join(other.root, "models")) == []


def test_failure_inside_the_transaction_leaves_nothing(registry, checkpoints, tmp_path, monkeypatch):
    package = registry.export(registry.register(checkpoints[0][0], "pets"), tmp_path / "p.tgpkg")
    other = Registry(tmp_path / "other")

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Registry, "_insert", fail)
    with pytest.raises(OSError, match="simulated"):
        other.import_package(package)
    with pytest.raises(OSError, match="simulated"):
        other.register(checkpoints[1][0], "pets")
    monkeypatch.undo()
    assert other.versions() == []
    assert [name for _, _, names in os.walk(os.path.join(other.root, "models")) for name in names] == []
    assert other.import_package(package).ref == "pets:1"


def test_predictor_hot_swap_between_calls_never_within(registry, checkpoints, monkeypatch):
    v1 = registry.register(checkpoints[0][0], "pets")
    v2 = registry.register(checkpoints[1][0], "pets")
    registry.activate(v1)
    predictor = Predictor(registry, "pets", batch_size=BATCH)
    x = images(8)
    expected = {v.id: registry.predict(v, x, batch_size=BATCH) for v in (v1, v2)}
    assert predictor.predict(x).version.id == v1.id

    # an activation landing in the middle of a call (between its batches) does not touch that call
    original_forward = registry_module._forward
    calls = []

    def forward_then_activate(model, batch, batch_size):
        if not calls:
            calls.append(1)
            registry.activate(v2)
        return original_forward(model, batch, batch_size)

    monkeypatch.setattr(registry_module, "_forward", forward_then_activate)
    during = predictor.predict(x)
    assert during.version.id == v1.id and np.array_equal(during.logits, expected[v1.id])
    after = predictor.predict(x)
    assert after.version.id == v2.id and np.array_equal(after.logits, expected[v2.id])
    assert list(after.class_names) == [["cat", "dog", "bird"][i] for i in after.labels]
    monkeypatch.undo()

    # threads predicting while another thread activates and rolls back: every answer is wholly one version's
    registry.activate(v1)
    results, errors, stop = [], [], threading.Event()

    def serve():
        try:
            while not stop.is_set():
                results.append(predictor.predict(x))
        except Exception as exc:  # noqa: BLE001 (reported by the main thread)
            errors.append(exc)

    workers = [threading.Thread(target=serve) for _ in range(3)]
    for worker in workers:
        worker.start()
    seen = 0
    for target in (v2, v1, v2):
        start = len(results)
        registry.activate(target)
        while not any(r.version.id == target.id for r in results[start:]) and not errors:
            threading.Event().wait(0.005)
        seen += 1
    stop.set()
    for worker in workers:
        worker.join()
    assert not errors and seen == 3
    assert {r.version.id for r in results} == {v1.id, v2.id}
    for result in results:
        assert np.array_equal(result.logits, expected[result.version.id])


def _register_many(root, checkpoint, count, worker, barrier):
    insert = Registry._insert

    def slow_insert(*args):
        time.sleep(0.02)  # a slow disk: keeps each transaction open long enough for the other process to collide
        return insert(*args)

    Registry._insert = slow_insert
    target = Registry(root)
    barrier.wait(timeout=120)  # both processes register at the same time
    for i in range(count):
        target.register(checkpoint, "shared", metrics={"worker": worker, "i": i})


def test_concurrent_registration_loses_nothing(tmp_path, checkpoints):
    root = str(tmp_path / "shared-registry")
    Registry(root)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    processes = [context.Process(target=_register_many, args=(root, str(checkpoints[w][0]), 10, w, barrier))
                 for w in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [process.exitcode for process in processes] == [0, 0]
    versions = Registry(root).versions("shared")
    assert sorted(v.version for v in versions) == list(range(1, 21))
    assert sorted((v.metrics["worker"], v.metrics["i"]) for v in versions) == [(w, i) for w in (0, 1)
                                                                               for i in range(10)]
    assert len({v.path for v in versions}) == 20 and all(os.path.isfile(v.path) for v in versions)
    for v in versions:
        Registry(root).verify(v)


def test_cli_registry_commands(tmp_path, checkpoints, capsys):
    root = str(tmp_path / "cli-registry")
    common = ["--registry", root]
    assert cli.main(["registry", "register", str(checkpoints[0][0]), "--name", "pets", "--task", "pets",
                     "--metrics", '{"val_accuracy": 0.8}', "--activate"] + common) == 0
    assert "registered pets:1" in capsys.readouterr().out
    assert cli.main(["registry", "register", str(checkpoints[1][0]), "--name", "pets", "--task", "pets"] + common) == 0
    assert cli.main(["registry", "activate", "pets", "2"] + common) == 0
    assert "task pets now serves pets:2" in capsys.readouterr().out
    assert cli.main(["registry", "list", "--metric", "val_accuracy", "--min", "0.5"] + common) == 0
    out = capsys.readouterr().out
    assert "pets:1" in out and "pets:2" not in out
    assert cli.main(["registry", "list"] + common) == 0
    assert "[active: pets]" in [line for line in capsys.readouterr().out.splitlines() if "pets:2" in line][0]
    assert cli.main(["registry", "rollback", "pets"] + common) == 0
    assert "rolled back to pets:1" in capsys.readouterr().out
    package = str(tmp_path / "pets.tgpkg")
    assert cli.main(["registry", "export", "pets", "2", package] + common) == 0
    assert cli.main(["registry", "import", package, "--name", "imported", "--registry", str(tmp_path / "r2")]) == 0
    assert "imported imported:1" in capsys.readouterr().out
    assert cli.main(["registry", "compare", "pets:1", "pets:2", "--batch-size", str(BATCH)] + common) == 0
    assert "forward_ms" in capsys.readouterr().out
    assert cli.main(["registry", "rollback", "pets"] + common) == 2
    assert "trugrade: error: registry rollback: task 'pets' has no earlier version" in capsys.readouterr().err
