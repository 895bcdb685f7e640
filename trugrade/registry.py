"""The model registry: trained checkpoints as numbered versions of named models, with the
version each task serves, in one folder (an SQLite database beside the weight files).

    registry = trugrade.registry.Registry()                 # ~/.trugrade/registry, or TRUGRADE_REGISTRY
    v = registry.register("runs/exp1/checkpoints/best.safetensors", "xray-cnn", task="pneumonia",
                          run="runs/exp1")                 # metadata from the checkpoint and the run
    registry.activate("xray-cnn", v.version)              # what the "pneumonia" task serves now
    model = trugrade.registry.load_active("pneumonia")     # a trugrade.models.Model, weights loaded
    registry.rollback("pneumonia")                         # back to the version served before
    registry.export("xray-cnn", 3, "xray-cnn-3.tgpkg"); other.import_package("xray-cnn-3.tgpkg")
    predictor = Predictor(registry, "pneumonia"); predictor.predict(images)   # follows activations

Folder: registry.sqlite, models/<name>/<version>-<sha256 prefix>.safetensors. A weight file is
copied in at registration, its SHA-256 recorded, and checked on every load: a modified or
truncated file is refused with a RegistryError, never loaded. Nothing is ever deleted: versions
are immutable, an activation pushes onto the task's stack (the replaced version stays
registered, with its file, as the rollback target) and every activation and rollback is logged.
Writers take the database lock first (BEGIN IMMEDIATE, with a busy timeout), so processes
registering at once each get their own version number.

The folder: the `root` argument, else the TRUGRADE_REGISTRY environment variable, else the
config key registry.path, else ~/.trugrade/registry.

It does not train, export ONNX or serve over a network.
"""
import contextlib
import datetime
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from collections.abc import Mapping

import numpy as np

from . import models, safetensors
from .errors import DatasetError, RegistryError, ShapeError, TrugradeError, TrugradeIOError

__all__ = ["ModelVersion", "Prediction", "Predictor", "Registry", "RegistryError", "default_root", "load_active"]

DEFAULT_ROOT = os.path.join("~", ".trugrade", "registry")
ENVIRONMENT_VARIABLE = "TRUGRADE_REGISTRY"
PACKAGE_FORMAT = "trugrade-model-package"
PACKAGE_FORMAT_VERSION = 1
PACKAGE_SUFFIX = ".tgpkg"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
_BUSY_TIMEOUT_S = 60.0
_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    task TEXT NOT NULL,
    architecture TEXT NOT NULL,
    num_classes INTEGER NOT NULL,
    in_channels INTEGER NOT NULL,
    input_size TEXT NOT NULL,        -- JSON: an integer or [height, width]
    classes TEXT NOT NULL,           -- JSON list of class names, index = label
    normalization TEXT,              -- JSON {"mean": [...], "std": [...]} or null
    metrics TEXT NOT NULL,           -- JSON {name: number}
    run TEXT,
    dataset_hash TEXT,
    config TEXT,                     -- JSON training config, or null
    config_hash TEXT,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    file TEXT NOT NULL,              -- relative to the registry folder
    source TEXT,                     -- JSON: where it came from (checkpoint path or package)
    created_at TEXT NOT NULL,        -- ISO 8601, UTC
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS active_stack (
    id INTEGER PRIMARY KEY AUTOINCREMENT,   -- per task, the highest id is the active version
    task TEXT NOT NULL,
    version_id INTEGER NOT NULL REFERENCES versions (id),
    activated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS activation_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    action TEXT NOT NULL,                   -- activate or rollback
    version_id INTEGER NOT NULL,            -- active after the action
    previous_id INTEGER,                    -- active before it
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS active_stack_task ON active_stack (task, id);
"""


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _utc(moment, what):
    """A datetime, date or ISO 8601 string as an aware UTC datetime (naive ones taken as UTC)."""
    if isinstance(moment, str):
        try:
            moment = datetime.datetime.fromisoformat(moment)
        except ValueError:
            raise RegistryError(f"registry search: {what} {moment!r} is not an ISO 8601 date or time "
                                f"(e.g. 2024-05-01 or 2024-05-01T12:00:00)") from None
    if isinstance(moment, datetime.date) and not isinstance(moment, datetime.datetime):
        moment = datetime.datetime(moment.year, moment.month, moment.day)
    if not isinstance(moment, datetime.datetime):
        raise RegistryError(f"registry search: {what} must be a date, datetime or ISO string, got {moment!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def default_root(config=None):
    """The registry folder when none is given: $TRUGRADE_REGISTRY, else config registry.path, else
    ~/.trugrade/registry."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return os.path.expanduser(os.environ[ENVIRONMENT_VARIABLE])
    section = config.get("registry") if isinstance(config, Mapping) else None
    if isinstance(section, Mapping) and section.get("path"):
        return os.path.expanduser(section["path"])
    return os.path.expanduser(DEFAULT_ROOT)


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    """One registered version (read-only). `ref` is "name:version"; `path` the weight file."""
    id: int
    name: str
    version: int
    task: str
    architecture: str
    num_classes: int
    in_channels: int
    input_size: object
    classes: list
    normalization: object
    metrics: dict
    run: object
    dataset_hash: object
    config: object
    config_hash: object
    sha256: str
    size_bytes: int
    path: str
    source: object
    created_at: str

    @property
    def ref(self):
        return f"{self.name}:{self.version}"

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class Prediction:
    """What Predictor.predict returns: the version that answered, logits (N, classes), the
    predicted label indices (N,) and their class names."""
    version: ModelVersion
    logits: np.ndarray
    labels: np.ndarray
    class_names: list = field(default_factory=list)


def _json_or_text(value):
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _normalization_of(config):
    """The normalize transform of a training config's data.augment, as {"mean", "std"}, or None."""
    for transform in (config.get("data") or {}).get("augment") or ():
        if isinstance(transform, Mapping) and transform.get("name") == "normalize":
            params = transform.get("params") or transform
            return {"mean": list(params["mean"]), "std": list(params["std"])}
    return None


def _final_metrics(run_dir):
    """The last per-epoch value of every number in a run's metrics.jsonl."""
    from .tracking import is_finite_number, read_metrics
    final = {}
    for record in read_metrics(run_dir):
        if "step" in record:
            continue
        for key, value in record.items():
            if key != "epoch" and is_finite_number(value):
                final[key] = float(value)
    return final


def _describe(path, metadata, options):
    """The fields of a version to register: options (arguments) over the run folder's run.json
    over the checkpoint's metadata (keys arch or architecture, num_classes, in_channels,
    input_size, classes, normalization, task, metrics, run, dataset_hash, config_hash, config;
    values JSON text or plain strings) over the training config's model section. Metrics merge,
    the arguments' winning."""
    meta = {key: _json_or_text(value) for key, value in metadata.items()}
    if "architecture" not in meta and "arch" in meta:
        meta["architecture"] = meta["arch"]
    for alias in ("normalisation", "normalize"):
        if "normalization" not in meta and alias in meta:
            meta["normalization"] = meta[alias]
    if "dataset_hash" not in meta and "dataset_manifest_hash" in meta:
        meta["dataset_hash"] = meta["dataset_manifest_hash"]
    run = options.get("run")
    if run is not None and os.path.isfile(os.path.join(os.fspath(run), "run.json")):
        from .tracking import read_run
        info = read_run(run)
        meta.setdefault("config", info.get("config"))
        meta["config_hash"] = meta.get("config_hash") or info.get("config_hash")
        meta["dataset_hash"] = meta.get("dataset_hash") or info.get("dataset_manifest_hash")
        meta["metrics"] = {**_final_metrics(run), **(meta.get("metrics") or {})}
        options = {**options, "run": info.get("name") or os.path.basename(os.path.normpath(os.fspath(run)))}
    config = meta.get("config") if isinstance(meta.get("config"), Mapping) else None
    if config is not None:
        model_section = config.get("model") or {}
        for key, source in (("architecture", "arch"), ("num_classes", "num_classes"),
                            ("in_channels", "in_channels"), ("input_size", "input_size")):
            if meta.get(key) is None and model_section.get(source) is not None:
                meta[key] = model_section[source]
        if meta.get("normalization") is None:
            meta["normalization"] = _normalization_of(config)
    fields = {key: value for key, value in meta.items() if value is not None}
    fields.update({key: value for key, value in options.items() if value is not None})
    if isinstance(meta.get("metrics"), Mapping) and isinstance(options.get("metrics"), Mapping):
        fields["metrics"] = {**meta["metrics"], **options["metrics"]}
    if fields.get("run") is not None:
        fields["run"] = os.fspath(fields["run"])
    if fields.get("classes") is not None:
        fields["classes"] = [str(c) for c in fields["classes"]]
        fields.setdefault("num_classes", len(fields["classes"]))
    missing = [key for key in ("architecture", "num_classes", "in_channels", "input_size") if fields.get(key) is None]
    if missing:
        raise RegistryError(f"registry register {path}: the checkpoint's metadata does not give "
                            f"{', '.join(missing)}; pass them as arguments (architecture=, num_classes=, "
                            f"in_channels=, input_size=) or give the run folder (run=)")
    fields["num_classes"] = int(fields["num_classes"])
    fields["in_channels"] = int(fields["in_channels"])
    classes = fields.get("classes") or [str(i) for i in range(fields["num_classes"])]
    if len(classes) != fields["num_classes"]:
        raise RegistryError(f"registry register {path}: {len(classes)} class names for num_classes "
                            f"{fields['num_classes']}; give one name per class")
    fields["classes"] = classes
    normalization = fields.get("normalization")
    if normalization is not None and not (isinstance(normalization, Mapping) and "mean" in normalization
                                          and "std" in normalization):
        raise RegistryError(f"registry register {path}: normalization must be {{'mean': [...], 'std': [...]}}, "
                            f"got {normalization!r}")
    metrics = fields.get("metrics") or {}
    if not isinstance(metrics, Mapping):
        raise RegistryError(f"registry register {path}: metrics must be a mapping of name to number, got {metrics!r}")
    fields["metrics"] = {str(k): float(v) for k, v in metrics.items()}
    return fields


def _square_size(version_fields, where):
    size = version_fields["input_size"]
    if isinstance(size, (list, tuple)):
        if len(size) != 2 or size[0] != size[1]:
            raise RegistryError(f"{where}: input size {list(size)} is not square; trugrade.models.create builds "
                                f"square inputs only")
        size = size[0]
    return int(size)


def _build_model(architecture, num_classes, in_channels, input_size, tensors, where):
    try:
        model = models.create(architecture, num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        model.load_state_dict(tensors)
    except (TrugradeError, ValueError, TypeError) as exc:
        raise RegistryError(f"{where}: the weights do not fit {architecture} (num_classes {num_classes}, "
                            f"in_channels {in_channels}, input_size {input_size}): {exc}") from None
    return model


def _forward(model, images, batch_size):
    """Logits of images (N, C, H, W) computed batch_size at a time."""
    outputs = [model.forward(images[begin:begin + batch_size]) for begin in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, model.options["num_classes"]), np.float32)


def _prepare(images, version):
    """float32 (N, C, H, W) as the model was trained on: uint8 pixels scaled to [0, 1] when the
    version has a normalization, then (x - mean) / std per channel."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4:
        raise ShapeError(f"{version.ref}: images must be (N, C, H, W) or one (C, H, W), got shape {images.shape}")
    scaled = images.dtype == np.uint8 and version.normalization is not None
    x = images.astype(np.float32) * (np.float32(1 / 255) if scaled else np.float32(1))
    if version.normalization is not None:
        mean = np.asarray(version.normalization["mean"], np.float32)
        std = np.asarray(version.normalization["std"], np.float32)
        if mean.size != x.shape[1] or std.size != x.shape[1]:
            raise ShapeError(f"{version.ref}: images have {x.shape[1]} channels, the version's normalization "
                             f"{mean.size}")
        x = (x - mean[None, :, None, None]) / std[None, :, None, None]
    return np.ascontiguousarray(x)


class Registry:
    """A model registry in a folder (created if missing). Every method opens its own SQLite
    connection, so one Registry may be shared by threads and used after fork."""

    def __init__(self, root=None, config=None):
        self.root = os.path.abspath(os.path.expanduser(os.fspath(root)) if root is not None else default_root(config))
        self.db_path = os.path.join(self.root, "registry.sqlite")
        try:
            os.makedirs(os.path.join(self.root, "models"), exist_ok=True)
        except OSError as exc:
            raise TrugradeIOError(exc.errno, f"cannot create the registry folder: {exc.strerror}", self.root) from None
        connection = self._connect()
        try:
            connection.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self.root}: cannot create the database {self.db_path}: {exc}") from None
        finally:
            connection.close()

    def __repr__(self):
        return f"trugrade.registry.Registry({self.root!r})"

    # ----------------------------------------------------------------------- database

    def _connect(self):
        try:
            connection = sqlite3.connect(self.db_path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self.root}: cannot open {self.db_path}: {exc}") from None
        connection.row_factory = sqlite3.Row
        return connection

    @contextlib.contextmanager
    def _transaction(self):
        """A write transaction holding the database's write lock from its start (BEGIN IMMEDIATE),
        committed at the end of the block, rolled back on any exception."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise RegistryError(f"registry {self.root}: database error: {exc}") from None
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def _query(self, sql, parameters=()):
        connection = self._connect()
        try:
            return connection.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(f"registry {self.root}: database error: {exc}") from None
        finally:
            connection.close()

    def _version(self, row):
        return ModelVersion(
            id=row["id"], name=row["name"], version=row["version"], task=row["task"],
            architecture=row["architecture"], num_classes=row["num_classes"], in_channels=row["in_channels"],
            input_size=json.loads(row["input_size"]), classes=json.loads(row["classes"]),
            normalization=json.loads(row["normalization"]) if row["normalization"] else None,
            metrics=json.loads(row["metrics"]), run=row["run"], dataset_hash=row["dataset_hash"],
            config=json.loads(row["config"]) if row["config"] else None, config_hash=row["config_hash"],
            sha256=row["sha256"], size_bytes=row["size_bytes"], path=os.path.join(self.root, row["file"]),
            source=json.loads(row["source"]) if row["source"] else None, created_at=row["created_at"])

    # ----------------------------------------------------------------------- registering

    def _check_name(self, name, what="model name"):
        if not isinstance(name, str) or not _NAME.match(name):
            raise RegistryError(f"registry: {what} {name!r} must start with a letter or digit and hold only "
                                f"letters, digits, '.', '_' and '-'")

    def _copy_in(self, source_path):
        """Copies a file into the registry's models folder under a temporary name; returns
        (temporary path, SHA-256, size) of the copy."""
        temporary = os.path.join(self.root, "models", f".incoming-{uuid.uuid4().hex}.safetensors")
        digest, size = hashlib.sha256(), 0
        try:
            with open(source_path, "rb") as source, open(temporary, "wb") as target:
                for chunk in iter(lambda: source.read(_CHUNK), b""):
                    digest.update(chunk)
                    target.write(chunk)
                    size += len(chunk)
                target.flush()
                os.fsync(target.fileno())
        except OSError as exc:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise TrugradeIOError(exc.errno, f"registry: cannot copy the weights in: {exc.strerror}",
                                  exc.filename or source_path) from None
        return temporary, digest.hexdigest(), size

    def _add(self, temporary, sha256, size, name, fields, source):
        """Registers the copied weight file as the next version of name in one transaction: the
        file is moved to its final name only inside it, and removed again if it fails."""
        final = None
        try:
            with self._transaction() as connection:
                (latest,) = connection.execute("SELECT COALESCE(MAX(version), 0) FROM versions WHERE name = ?",
                                               (name,)).fetchone()
                version = latest + 1
                relative = os.path.join("models", name, f"{version}-{sha256[:12]}.safetensors")
                os.makedirs(os.path.join(self.root, "models", name), exist_ok=True)
                final = os.path.join(self.root, relative)
                os.replace(temporary, final)
                self._insert(connection, name, version, fields, sha256, size, relative, source)
        except BaseException:
            for leftover in (temporary, final):
                if leftover is not None and os.path.exists(leftover):
                    os.unlink(leftover)
            raise
        return self.get(name, version)

    def _insert(self, connection, name, version, fields, sha256, size, relative, source):
        connection.execute(
            "INSERT INTO versions (name, version, task, architecture, num_classes, in_channels, input_size, classes, "
            "normalization, metrics, run, dataset_hash, config, config_hash, sha256, size_bytes, file, source, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, version, fields.get("task") or name, fields["architecture"], fields["num_classes"],
             fields["in_channels"], json.dumps(fields["input_size"]), json.dumps(fields["classes"]),
             json.dumps(fields["normalization"]) if fields.get("normalization") is not None else None,
             json.dumps(fields["metrics"]), fields.get("run"), fields.get("dataset_hash"),
             json.dumps(fields["config"]) if fields.get("config") is not None else None, fields.get("config_hash"),
             sha256, size, relative, json.dumps(source), _now()))

    def _verify_weights(self, path, fields, where):
        """Parses a copied weight file and checks that it fits the architecture."""
        tensors, metadata = safetensors.load(path)
        _build_model(fields["architecture"], fields["num_classes"], fields["in_channels"],
                     _square_size(fields, where), tensors, where)
        return metadata

    def register(self, checkpoint, name, *, task=None, architecture=None, num_classes=None, in_channels=None,
                 input_size=None, classes=None, normalization=None, metrics=None, run=None, dataset_hash=None,
                 config=None):
        """Registers a safetensors checkpoint as the next version of model `name` and returns its
        ModelVersion. Metadata comes from the arguments, then the run folder (run=: its config,
        dataset hash and last per-epoch metrics), then the checkpoint's own metadata; task
        defaults to name. The file is copied into the registry with its SHA-256, and checked to
        load into the architecture first."""
        self._check_name(name)
        if task is not None:
            self._check_name(task, "task")
        checkpoint = os.fspath(checkpoint)
        where = f"registry register {checkpoint}"
        if not os.path.isfile(checkpoint):
            raise RegistryError(f"{where}: no such checkpoint file")
        temporary, sha256, size = self._copy_in(checkpoint)
        try:
            _, metadata = safetensors.load(temporary)
            options = {"task": task, "architecture": architecture, "num_classes": num_classes,
                       "in_channels": in_channels, "input_size": input_size, "classes": classes,
                       "normalization": normalization, "metrics": metrics, "run": run, "dataset_hash": dataset_hash,
                       "config": config.to_dict() if hasattr(config, "to_dict") else config}
            fields = _describe(checkpoint, metadata, options)
            if fields.get("config") is not None and not fields.get("config_hash"):
                from .config import config_hash
                fields["config_hash"] = config_hash(fields["config"])
            if fields.get("task") is not None:
                self._check_name(fields["task"], "task")
            self._verify_weights(temporary, fields, where)
        except DatasetError as exc:
            os.unlink(temporary)
            raise RegistryError(f"{where}: not a readable safetensors file: {exc}") from None
        except BaseException:
            os.unlink(temporary)
            raise
        return self._add(temporary, sha256, size, name, fields, {"checkpoint": os.path.abspath(checkpoint)})

    # ----------------------------------------------------------------------- looking up

    def _resolve(self, ref, version=None):
        """A ModelVersion from a ModelVersion, a "name:version" / "name" string or (name, version)."""
        if isinstance(ref, ModelVersion):
            return ref
        if isinstance(ref, tuple):
            ref, version = ref
        if version is None and isinstance(ref, str) and ":" in ref:
            ref, _, number = ref.rpartition(":")
            try:
                version = int(number)
            except ValueError:
                raise RegistryError(f"registry: version reference '{ref}:{number}' must be name:number") from None
        return self.get(ref, version)

    def get(self, name, version=None):
        """The ModelVersion of name at version (default: the latest)."""
        if version is None:
            rows = self._query("SELECT * FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self._query("SELECT * FROM versions WHERE name = ? AND version = ?", (name, int(version)))
        if not rows:
            known = [row["version"] for row in self._query("SELECT version FROM versions WHERE name = ? "
                                                           "ORDER BY version", (name,))]
            if not known:
                names = [row["name"] for row in self._query("SELECT DISTINCT name FROM versions ORDER BY name")]
                raise RegistryError(f"registry {self.root}: no model named '{name}' (models: "
                                    f"{', '.join(names) or 'none'})")
            raise RegistryError(f"registry {self.root}: model '{name}' has no version {version} "
                                f"(versions: {', '.join(map(str, known))})")
        return self._version(rows[0])

    def get_by_id(self, version_id):
        rows = self._query("SELECT * FROM versions WHERE id = ?", (int(version_id),))
        if not rows:
            raise RegistryError(f"registry {self.root}: no version with id {version_id}")
        return self._version(rows[0])

    def versions(self, name=None):
        """Every ModelVersion (of name), oldest first."""
        return self.search(name=name)

    def search(self, *, name=None, task=None, architecture=None, metric=None, min_value=None, max_value=None,
               since=None, until=None):
        """ModelVersions matching every filter given, oldest first: name, task, architecture,
        metric within [min_value, max_value] (versions without that metric are left out), and
        registration time within [since, until] (datetimes, dates or ISO strings; naive = UTC)."""
        clauses, parameters = [], []
        for column, value in (("name", name), ("task", task), ("architecture", architecture)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        sql = "SELECT * FROM versions" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY id"
        found = [self._version(row) for row in self._query(sql, parameters)]
        if (min_value is not None or max_value is not None) and metric is None:
            raise RegistryError("registry search: min_value / max_value need metric= (the metric they bound)")
        if metric is not None:
            found = [v for v in found if metric in v.metrics
                     and (min_value is None or v.metrics[metric] >= min_value)
                     and (max_value is None or v.metrics[metric] <= max_value)]
        if since is not None:
            start = _utc(since, "since")
            found = [v for v in found if _utc(v.created_at, "created_at") >= start]
        if until is not None:
            end = _utc(until, "until")
            found = [v for v in found if _utc(v.created_at, "created_at") <= end]
        return found

    # ----------------------------------------------------------------------- loading

    def verify(self, ref, version=None):
        """Checks a version's weight file against its registered SHA-256; raises RegistryError
        (modified, truncated or missing file) or returns the ModelVersion."""
        entry = self._resolve(ref, version)
        try:
            actual = _sha256_file(entry.path)
        except FileNotFoundError:
            raise RegistryError(f"registry: {entry.ref}: weight file {entry.path} is missing; it is not loaded "
                                f"(restore it from an exported package, or register the checkpoint again)") from None
        except OSError as exc:
            raise RegistryError(f"registry: {entry.ref}: cannot read weight file {entry.path}: {exc.strerror}") from None
        if actual != entry.sha256:
            size = os.path.getsize(entry.path)
            raise RegistryError(f"registry: {entry.ref}: weight file {entry.path} has SHA-256 {actual} ({size} bytes) "
                                f"but was registered with {entry.sha256} ({entry.size_bytes} bytes): it was modified "
                                f"or truncated and is not loaded (restore it from an exported package, or register "
                                f"the checkpoint again)")
        return entry

    def load(self, ref, version=None):
        """A trugrade.models.Model with the weights of a version (default: the latest of name),
        after checking the file's SHA-256."""
        return self._load_version(self._resolve(ref, version))

    def _load_version(self, entry):
        self.verify(entry)
        # NOTE: the file is hashed, then parsed. A change between the two needs write access to
        # the registry folder; the hash guards the files at rest (corruption, tampering, copies).
        tensors, _ = safetensors.load(entry.path)
        return _build_model(entry.architecture, entry.num_classes, entry.in_channels,
                            _square_size(entry.to_dict(), f"registry: {entry.ref}"), tensors,
                            f"registry: {entry.ref}")

    # ----------------------------------------------------------------------- activation

    def active_id(self, task):
        """The id of the version task serves, or None (one small query: cheap to poll)."""
        rows = self._query("SELECT version_id FROM active_stack WHERE task = ? ORDER BY id DESC LIMIT 1", (task,))
        return rows[0]["version_id"] if rows else None

    def active(self, task):
        """The ModelVersion task serves, or None."""
        version_id = self.active_id(task)
        return None if version_id is None else self.get_by_id(version_id)

    def tasks(self):
        """{task: active ModelVersion} of every task with an active version."""
        rows = self._query("SELECT task, version_id FROM active_stack WHERE id IN "
                           "(SELECT MAX(id) FROM active_stack GROUP BY task) ORDER BY task")
        return {row["task"]: self.get_by_id(row["version_id"]) for row in rows}

    def activate(self, ref, version=None, task=None):
        """Makes a version the one task (default: the version's own task) serves; the version it
        replaces stays on the task's stack for rollback(). Returns the ModelVersion."""
        entry = self._resolve(ref, version)
        task = task or entry.task
        self._check_name(task, "task")
        self.verify(entry)
        with self._transaction() as connection:
            row = connection.execute("SELECT version_id FROM active_stack WHERE task = ? ORDER BY id DESC LIMIT 1",
                                     (task,)).fetchone()
            previous = row["version_id"] if row else None
            if previous != entry.id:
                at = _now()
                connection.execute("INSERT INTO active_stack (task, version_id, activated_at) VALUES (?, ?, ?)",
                                   (task, entry.id, at))
                connection.execute("INSERT INTO activation_log (task, action, version_id, previous_id, at) "
                                   "VALUES (?, 'activate', ?, ?, ?)", (task, entry.id, previous, at))
        return entry

    def rollback(self, task):
        """Restores the version task served before the last activation; returns it. The version
        rolled back from stays registered."""
        with self._transaction() as connection:
            rows = connection.execute("SELECT id, version_id FROM active_stack WHERE task = ? ORDER BY id DESC "
                                      "LIMIT 2", (task,)).fetchall()
            if not rows:
                raise RegistryError(f"registry rollback: task '{task}' has no active version")
            if len(rows) < 2:
                raise RegistryError(f"registry rollback: task '{task}' has no earlier version to roll back to "
                                    f"(only version id {rows[0]['version_id']} was ever active)")
            connection.execute("DELETE FROM active_stack WHERE id = ?", (rows[0]["id"],))
            connection.execute("INSERT INTO activation_log (task, action, version_id, previous_id, at) "
                               "VALUES (?, 'rollback', ?, ?, ?)", (task, rows[1]["version_id"], rows[0]["version_id"],
                                                                   _now()))
        return self.get_by_id(rows[1]["version_id"])

    def history(self, task):
        """Every activation and rollback of task, oldest first: dicts of action, version (ref),
        previous (ref or None) and time."""
        rows = self._query("SELECT * FROM activation_log WHERE task = ? ORDER BY id", (task,))
        refs = {}

        def ref(version_id):
            if version_id is None:
                return None
            if version_id not in refs:
                refs[version_id] = self.get_by_id(version_id).ref
            return refs[version_id]

        return [{"action": row["action"], "version": ref(row["version_id"]), "previous": ref(row["previous_id"]),
                 "at": row["at"]} for row in rows]

    def load_active(self, task):
        """The Model task serves (weights checked and loaded)."""
        entry = self.active(task)
        if entry is None:
            tasks = ", ".join(self.tasks()) or "none"
            raise RegistryError(f"registry {self.root}: task '{task}' has no active version (tasks with one: "
                                f"{tasks}); activate one with Registry.activate or `trugrade registry activate`")
        return self._load_version(entry)

    # ----------------------------------------------------------------------- comparing

    def compare(self, refs, batch_size=8, repeats=5, seed=0):
        """Versions side by side: {"columns", "rows"} with one row per version: ref, task,
        architecture, parameters, file size, forward time of a batch (median of repeats, ms, after
        one warm-up) and every metric any of them has."""
        entries = [self._resolve(ref) for ref in refs]
        metric_names = sorted({name for entry in entries for name in entry.metrics})
        columns = ["version", "task", "architecture", "parameters", "size_bytes", f"forward_ms (batch {batch_size})"]
        columns += metric_names
        rng = np.random.default_rng(seed)
        rows = []
        for entry in entries:
            model = self._load_version(entry)
            size = _square_size(entry.to_dict(), entry.ref)
            batch = rng.random((batch_size, entry.in_channels, size, size), dtype=np.float32)
            model.forward(batch)
            times = []
            for _ in range(max(1, repeats)):
                begin = time.perf_counter()
                model.forward(batch)
                times.append((time.perf_counter() - begin) * 1000.0)
            rows.append([entry.ref, entry.task, entry.architecture, model.parameter_count(), entry.size_bytes,
                         float(np.median(times))] + [entry.metrics.get(name) for name in metric_names])
        return {"columns": columns, "rows": rows}

    def predict(self, ref, images, batch_size=32):
        """Logits of a version on images (see Predictor.predict for the input)."""
        entry = self._resolve(ref)
        return _forward(self._load_version(entry), _prepare(images, entry), batch_size)

    def ab_test(self, ref_a, ref_b, images, labels, *, n_bootstrap=2000, seed=0, batch_size=32):
        """Evaluates two versions on the same images and labels: accuracy of each, the difference
        b - a and its 95% confidence interval from a paired bootstrap (the same resampled images
        for both; seeded, so repeatable). significant: the interval excludes 0."""
        a, b = self._resolve(ref_a), self._resolve(ref_b)
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        count = len(labels)
        if count == 0 or len(images) != count:
            raise RegistryError(f"registry ab_test: {len(images)} images and {count} labels; give one label per "
                                f"image (at least one)")
        correct = []
        for entry in (a, b):
            if labels.min() < 0 or labels.max() >= entry.num_classes:
                raise RegistryError(f"registry ab_test: labels span [{labels.min()}, {labels.max()}] but "
                                    f"{entry.ref} has {entry.num_classes} classes")
            logits = self.predict(entry, images, batch_size)
            correct.append((logits.argmax(axis=1) == labels).astype(np.float64))
        difference = correct[1] - correct[0]
        rng = np.random.default_rng(seed)
        resampled = []
        chunk = max(1, min(n_bootstrap, (1 << 22) // count))
        for begin in range(0, n_bootstrap, chunk):
            picks = rng.integers(0, count, size=(min(chunk, n_bootstrap - begin), count))
            resampled.append(difference[picks].mean(axis=1))
        resampled = np.concatenate(resampled)
        low, high = np.percentile(resampled, [2.5, 97.5])
        return {"a": a.ref, "b": b.ref, "n": count, "accuracy_a": float(correct[0].mean()),
                "accuracy_b": float(correct[1].mean()), "difference": float(difference.mean()),
                "ci95": (float(low), float(high)), "significant": bool(low > 0 or high < 0),
                "n_bootstrap": n_bootstrap, "seed": seed}

    # ----------------------------------------------------------------------- packages

    def export(self, ref, path, version=None):
        """Writes a version as one portable package (a zip, suffix .tgpkg): weights.safetensors,
        config.json, classes.json, normalization.json, metrics.json and manifest.json (the
        model's description and the SHA-256 of every file). Returns the path written."""
        entry = self.verify(self._resolve(ref, version))
        path = os.fspath(path)
        description = {key: value for key, value in entry.to_dict().items()
                       if key not in ("id", "path", "config", "classes", "normalization", "metrics", "source")}
        payloads = {"config.json": entry.config, "classes.json": entry.classes,
                    "normalization.json": entry.normalization, "metrics.json": entry.metrics}
        files = {name: json.dumps(value, indent=2, ensure_ascii=False).encode() for name, value in payloads.items()}
        with open(entry.path, "rb") as handle:
            files["weights.safetensors"] = handle.read()
        if hashlib.sha256(files["weights.safetensors"]).hexdigest() != entry.sha256:
            raise RegistryError(f"registry export: {entry.ref}: the weight file changed while being read")
        from . import __version__
        manifest = {"format": PACKAGE_FORMAT, "format_version": PACKAGE_FORMAT_VERSION,
                    "trugrade_version": __version__, "exported_at": _now(), "model": description,
                    "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                              for name, data in sorted(files.items())}}
        temporary = f"{path}.tmp-{os.getpid()}"
        try:
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as package:
                package.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
                for name, data in sorted(files.items()):
                    package.writestr(name, data)
            os.replace(temporary, path)
        except OSError as exc:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise TrugradeIOError(exc.errno, f"registry export: cannot write the package: {exc.strerror}", path) from None
        return path

    def import_package(self, path, name=None, task=None):
        """Registers the model of a package (from export) as the next version of name (default:
        the package's model name). Every file is checked against the manifest's SHA-256 and the
        weights against the architecture before anything is written; a corrupted package raises
        RegistryError and registers nothing."""
        path = os.fspath(path)
        where = f"registry import {path}"
        files, manifest = _read_package(path, where)
        model = manifest["model"]
        name = name or model.get("name")
        self._check_name(name)
        fields = dict(model)
        fields.update(task=task or model.get("task"), classes=files["classes.json"],
                      normalization=files["normalization.json"], metrics=files["metrics.json"] or {},
                      config=files["config.json"], run=None)
        try:
            fields = _describe(path, {}, fields)
        except RegistryError as exc:
            raise RegistryError(f"{where}: the manifest's model description is incomplete: {exc}") from None
        fields["run"] = model.get("run")  # a name on the exporting machine, not a folder here
        temporary = os.path.join(self.root, "models", f".incoming-{uuid.uuid4().hex}.safetensors")
        try:
            with open(temporary, "wb") as handle:
                handle.write(files["weights.safetensors"])
                handle.flush()
                os.fsync(handle.fileno())
            self._verify_weights(temporary, fields, where)
        except DatasetError as exc:
            os.unlink(temporary)
            raise RegistryError(f"{where}: the package's weights are not a readable safetensors file: {exc}") from None
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        source = {"package": os.path.abspath(path), "name": model.get("name"), "version": model.get("version"),
                  "exported_at": manifest.get("exported_at")}
        return self._add(temporary, manifest["files"]["weights.safetensors"]["sha256"],
                         len(files["weights.safetensors"]), name, fields, source)


_PACKAGE_FILES = ("weights.safetensors", "config.json", "classes.json", "normalization.json", "metrics.json")


def _read_package(path, where):
    """(files, manifest) of a package: weights as bytes, the JSON files parsed; every file checked
    against the manifest's SHA-256 and size."""
    try:
        with zipfile.ZipFile(path) as package:
            names = set(package.namelist())
            if "manifest.json" not in names:
                raise RegistryError(f"{where}: not a trugrade model package (no manifest.json)")
            manifest = json.loads(package.read("manifest.json"))
            if not isinstance(manifest, Mapping) or manifest.get("format") != PACKAGE_FORMAT:
                raise RegistryError(f"{where}: manifest.json is not a {PACKAGE_FORMAT} manifest")
            if manifest.get("format_version", 0) > PACKAGE_FORMAT_VERSION:
                raise RegistryError(f"{where}: package format version {manifest.get('format_version')} is newer than "
                                    f"this trugrade reads ({PACKAGE_FORMAT_VERSION}); update trugrade")
            listed = manifest.get("files") or {}
            missing = [name for name in _PACKAGE_FILES if name not in listed or name not in names]
            if missing or not isinstance(manifest.get("model"), Mapping):
                raise RegistryError(f"{where}: the package lacks {', '.join(missing) or 'its model description'}")
            raw = {}
            for name in _PACKAGE_FILES:
                data = package.read(name)
                digest = hashlib.sha256(data).hexdigest()
                if digest != listed[name].get("sha256") or len(data) != listed[name].get("size"):
                    raise RegistryError(f"{where}: {name} has SHA-256 {digest} ({len(data)} bytes), the manifest "
                                        f"says {listed[name].get('sha256')} ({listed[name].get('size')} bytes): the "
                                        f"package is corrupted; nothing was registered")
                raw[name] = data
    except RegistryError:
        raise
    except FileNotFoundError:
        raise RegistryError(f"{where}: no such package file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, KeyError, ValueError, TypeError,
            AttributeError) as exc:
        raise RegistryError(f"{where}: the package is corrupted or not a zip file ({type(exc).__name__}: {exc}); "
                            f"nothing was registered") from None
    if manifest["model"].get("sha256") != listed["weights.safetensors"]["sha256"]:
        raise RegistryError(f"{where}: the manifest's model SHA-256 does not match its weights entry; the package "
                            f"is corrupted; nothing was registered")
    files = {"weights.safetensors": raw["weights.safetensors"]}
    try:
        for name in _PACKAGE_FILES[1:]:
            files[name] = json.loads(raw[name])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RegistryError(f"{where}: {name} is not valid JSON ({exc}); nothing was registered") from None
    return files, manifest


# --------------------------------------------------------------------------- serving


class Predictor:
    """Serves the active version of a task and follows activations without a restart: each
    predict() call first checks, under a lock, which version is active and loads it if it
    changed, then answers entirely with that version; a new activation is picked up between
    two calls, never in the middle of one. Calls are serialized by the same lock (a Model
    runs one forward at a time)."""

    def __init__(self, registry, task, batch_size=32):
        self.registry = registry if isinstance(registry, Registry) else Registry(registry)
        self.task = task
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._entry = None
        self._model = None

    @property
    def version(self):
        """The ModelVersion that answered the last call (None before the first)."""
        return self._entry

    def _refresh(self):
        active_id = self.registry.active_id(self.task)
        if active_id is None:
            raise RegistryError(f"Predictor: task '{self.task}' has no active version in {self.registry.root}")
        if self._entry is None or self._entry.id != active_id:
            entry = self.registry.get_by_id(active_id)
            self._model = self.registry._load_version(entry)
            self._entry = entry

    def predict(self, images):
        """A Prediction for images (N, C, H, W) or one (C, H, W) at the version's input size:
        float32 as the training pipeline fed them before normalize, or uint8 pixels (scaled to
        [0, 1] when the version normalizes); the version's normalization is applied here."""
        with self._lock:
            self._refresh()
            entry, model = self._entry, self._model
            logits = _forward(model, _prepare(images, entry), self.batch_size)
        labels = logits.argmax(axis=1)
        return Prediction(version=entry, logits=logits, labels=labels,
                          class_names=[entry.classes[i] for i in labels])


def load_active(task, registry=None):
    """The trugrade.models.Model the task serves, from the registry folder given (or the
    default one: $TRUGRADE_REGISTRY, else ~/.trugrade/registry)."""
    return (registry if isinstance(registry, Registry) else Registry(registry)).load_active(task)
