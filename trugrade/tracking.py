"""Experiment tracking: what a run was (run.json), what it measured (metrics.jsonl, TensorBoard
event files) and, when asked, a mirror of both in MLflow.

    with RunRecorder("runs/exp1", cfg, dataset_manifest_hash=manifest_hash) as recorder:
        recorder.log_metrics(step=10, epoch=0, loss=0.71, lr=1e-3)
        recorder.log_metrics(epoch=0, train_loss=0.69, val_loss=0.74, val_accuracy=0.81)
        recorder.log_artifact("runs/exp1/checkpoints/best.safetensors")

run.json holds the resolved config, every hyperparameter under its dotted key, the git commit
and dirty state of the working tree, the dataset manifest hash, the trugrade version, the
machine, start and end times and the status (running, completed, failed, interrupted).

TensorBoard files are written here (TFRecord framing, hand-encoded Event protobufs): nothing
under trugrade/ imports tensorboard or tensorflow. MLflow is used through its own client, only
when config tracking.mlflow is true and the mlflow package is importable.

It does not train, save checkpoints or choose what to log: the training loop calls it.
"""
import datetime
import json
import math
import os
import platform
import socket
import struct
import subprocess
import time
import warnings
from collections.abc import Mapping

from .errors import TrugradeIOError, TrugradeValueError

__all__ = ["RunRecorder", "TensorBoardWriter", "flatten", "git_state", "machine_info", "read_metrics",
           "read_run", "masked_crc32c"]

STATUSES = ("running", "completed", "failed", "interrupted")


# --------------------------------------------------------------------------- small helpers


def flatten(tree, prefix=""):
    """{dotted key: value} of a nested mapping: mappings (and lists holding mappings) are walked,
    `data.augment[0].name`; lists of plain values stay lists."""
    flat = {}
    if isinstance(tree, Mapping):
        if not tree and prefix:
            flat[prefix] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, (list, tuple)) and any(isinstance(item, Mapping) for item in tree):
        for i, item in enumerate(tree):
            flat.update(flatten(item, f"{prefix}[{i}]"))
    elif isinstance(tree, (list, tuple)):
        flat[prefix] = list(tree)
    else:
        flat[prefix] = tree
    return flat


def _plain(config):
    """A config (trugrade.config.Config or any mapping) as plain dicts and lists."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return json.loads(json.dumps(config, default=str))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _write_json(path, data):
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, ensure_ascii=False, default=str)
            handle.write("\n")
        os.replace(temporary, path)
    except OSError as exc:
        raise TrugradeIOError(exc.errno, f"cannot write {os.path.basename(path)}: {exc.strerror}", path) from None


def git_state(directory=None):
    """{"commit", "dirty", "branch"} of the git working tree holding directory (default: the
    current one); every value None where git is missing or the folder is not in a repository.
    NOTE: dirty counts changes to tracked files only; untracked files (outputs, data) would
    make every run dirty."""
    state = {"commit": None, "dirty": None, "branch": None}

    def git(*args):
        result = subprocess.run(["git", *args], cwd=directory or os.getcwd(), capture_output=True, text=True,
                                timeout=20, check=True)
        return result.stdout.strip()

    try:
        state["commit"] = git("rev-parse", "HEAD")
        state["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        state["branch"] = None if branch == "HEAD" else branch
    except (OSError, subprocess.SubprocessError):
        pass
    return state


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _total_ram_bytes():
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def machine_info(threads=None):
    """The machine a run uses: CPU model, logical CPUs, compute threads, total RAM, OS, Python."""
    if threads is None:
        from .tensor import get_num_threads
        threads = get_num_threads()
    return {"cpu_model": _cpu_model(), "logical_cpus": os.cpu_count(), "threads": threads,
            "ram_bytes": _total_ram_bytes(), "hostname": socket.gethostname(),
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version()}


def _scalars(values, prefix=""):
    """(tag, float) of every number in values; nested mappings give dotted tags, other values
    (lists, strings, None) are left to metrics.jsonl."""
    for key, value in values.items():
        tag = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _scalars(value, tag)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield tag, float(value)
        elif hasattr(value, "dtype") and getattr(value, "shape", None) == ():
            yield tag, float(value)


# --------------------------------------------------------------------------- TensorBoard


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C (Castagnoli), the checksum of TFRecord framing."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """TFRecord's masked CRC-32C: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value):
    value &= 0xFFFFFFFFFFFFFFFF  # int64 fields encode negatives as 10-byte two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field_bytes(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time, step=None, file_version=None, scalars=()):
    """An Event protobuf: wall_time (1, double), step (2, int64), file_version (3, string),
    summary (5, Summary of Value{tag (1), simple_value (2, float)})."""
    message = b"\x09" + struct.pack("<d", wall_time)
    if step is not None:
        message += b"\x10" + _varint(int(step))
    if file_version is not None:
        message += _field_bytes(3, file_version.encode())
    if scalars:
        summary = b"".join(_field_bytes(1, _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
                           for tag, value in scalars)
        message += _field_bytes(5, summary)
    return message


class TensorBoardWriter:
    """Appends scalars to one TensorBoard event file in a folder (flushed after every write, so
    a running TensorBoard shows them at once)."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.trugrade"
        self.path = os.path.join(directory, name)
        try:
            self._file = open(self.path, "ab")
        except OSError as exc:
            raise TrugradeIOError(exc.errno, f"cannot create the TensorBoard event file: {exc.strerror}",
                                  self.path) from None
        self._write(_event(time.time(), step=0, file_version="brain.Event:2"))

    def _write(self, record):
        header = struct.pack("<Q", len(record))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + record +
                         struct.pack("<I", masked_crc32c(record)))
        self._file.flush()

    def add_scalars(self, step, scalars, wall_time=None):
        """Writes [(tag, value), ...] at step as one event."""
        scalars = list(scalars)
        if scalars:
            self._write(_event(time.time() if wall_time is None else wall_time, step=step, scalars=scalars))

    def close(self):
        if not self._file.closed:
            self._file.close()


# --------------------------------------------------------------------------- MLflow


class _MlflowMirror:
    """Params, metrics and artifacts of a run mirrored through mlflow's MlflowClient."""

    def __init__(self, client_class, run_name, params, tracking_uri, experiment, artifact_location):
        from mlflow.entities import Param
        self.client = client_class(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (found.experiment_id if found is not None else
                         self.client.create_experiment(experiment, artifact_location=artifact_location))
        self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                             tags={"trugrade.version": _version()}).info.run_id
        items = [Param(key, json.dumps(value) if isinstance(value, (list, dict)) else str(value))
                 for key, value in sorted(params.items())]
        for begin in range(0, len(items), 100):  # NOTE: MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[begin:begin + 100])

    def log_metrics(self, step, scalars):
        from mlflow.entities import Metric
        timestamp = int(time.time() * 1000)
        metrics = [Metric(tag, value, timestamp, step) for tag, value in scalars]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifact(self, path, artifact_path=None):
        self.client.log_artifact(self.run_id, path, artifact_path)

    def finish(self, status):
        mlflow_status = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED"}[status]
        self.client.set_terminated(self.run_id, status=mlflow_status)


def _version():
    from . import __version__
    return __version__


# --------------------------------------------------------------------------- the recorder


class RunRecorder:
    """Records one training run in run_dir: run.json, metrics.jsonl, tensorboard/ and an
    optional MLflow mirror. Use it as a context manager (an exception marks the run failed,
    Ctrl-C interrupted) or call finish() yourself.

    config: the resolved config (trugrade.config.Config or a mapping); tracking.tensorboard and
    tracking.mlflow in it switch those outputs (TensorBoard on, MLflow off when absent).
    mlflow_tracking_uri / mlflow_experiment / mlflow_artifact_location: where the MLflow mirror
    goes (None: MLflow's own defaults, e.g. the MLFLOW_TRACKING_URI environment variable).
    """

    def __init__(self, run_dir, config, dataset_manifest_hash=None, *, threads=None, source_dir=None,
                 mlflow_tracking_uri=None, mlflow_experiment="trugrade", mlflow_artifact_location=None):
        self.run_dir = os.fspath(run_dir)
        try:
            os.makedirs(self.run_dir, exist_ok=True)
        except OSError as exc:
            raise TrugradeIOError(exc.errno, f"cannot create the run folder: {exc.strerror}", self.run_dir) from None
        from .config import config_hash
        resolved = _plain(config)
        tracking = resolved.get("tracking") or {}
        self.name = os.path.basename(os.path.normpath(self.run_dir))
        self.metrics_path = os.path.join(self.run_dir, "metrics.jsonl")
        self.run_json_path = os.path.join(self.run_dir, "run.json")
        self._started = time.time()
        self._mlflow = None
        self._tensorboard = None
        self._finished = False
        self.record = {
            "name": self.name,
            "status": "running",
            "start_time": _now(),
            "end_time": None,
            "duration_s": None,
            "error": None,
            "trugrade_version": _version(),
            "config_hash": config_hash(resolved),
            "dataset_manifest_hash": dataset_manifest_hash,
            "git": git_state(source_dir),
            "machine": machine_info(threads),
            "tensorboard": None,
            "mlflow": None,
            "hyperparameters": flatten(resolved),
            "config": resolved,
        }
        if tracking.get("tensorboard", True):
            self._tensorboard = TensorBoardWriter(os.path.join(self.run_dir, "tensorboard"))
            self.record["tensorboard"] = os.path.relpath(self._tensorboard.path, self.run_dir)
        if tracking.get("mlflow", False):
            self._start_mlflow(mlflow_tracking_uri, mlflow_experiment, mlflow_artifact_location)
        self._save()

    def _start_mlflow(self, tracking_uri, experiment, artifact_location):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            self.record["mlflow"] = {"enabled": False, "reason": f"tracking.mlflow is true but the mlflow package "
                                                                 f"is not installed (pip install mlflow): {exc}"}
            warnings.warn(f"run {self.name}: {self.record['mlflow']['reason']}; the run is recorded without MLflow",
                          RuntimeWarning, stacklevel=3)
            return
        self._mlflow = _MlflowMirror(MlflowClient, self.name, self.record["hyperparameters"], tracking_uri, experiment,
                                     artifact_location)
        self.record["mlflow"] = {"enabled": True, "run_id": self._mlflow.run_id,
                                 "tracking_uri": self._mlflow.client.tracking_uri}

    def _save(self):
        _write_json(self.run_json_path, self.record)

    @property
    def mlflow_run_id(self):
        """The MLflow run mirrored to, or None."""
        return self._mlflow.run_id if self._mlflow else None

    def log_metrics(self, step=None, epoch=None, **values):
        """Appends {"step", "epoch", **values} to metrics.jsonl (None keys left out) and writes the
        numbers among values as TensorBoard scalars (and MLflow metrics) at step, or at epoch when
        no step is given."""
        if self._finished:
            raise TrugradeValueError(f"run {self.name}: log_metrics after the run finished "
                                     f"({self.record['status']})")
        if step is None and epoch is None:
            raise TrugradeValueError(f"run {self.name}: log_metrics needs step= or epoch= to place the values")
        entry = {key: value for key, value in (("step", step), ("epoch", epoch)) if value is not None}
        entry.update(values)
        line = json.dumps(entry, default=_json_default, allow_nan=True)
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            raise TrugradeIOError(exc.errno, f"cannot append to metrics.jsonl: {exc.strerror}",
                                  self.metrics_path) from None
        scalars = list(_scalars(values))
        position = int(step if step is not None else epoch)
        if self._tensorboard:
            self._tensorboard.add_scalars(position, scalars)
        if self._mlflow:
            self._mlflow.log_metrics(position, scalars)

    def log_artifact(self, path, artifact_path=None):
        """Mirrors a file (a checkpoint, a plot) to MLflow; a no-op without MLflow."""
        if self._mlflow:
            self._mlflow.log_artifact(os.fspath(path), artifact_path)

    def finish(self, status="completed", error=None):
        """Closes the run: status completed, failed or interrupted, with an error message."""
        if status not in STATUSES[1:]:
            raise TrugradeValueError(f"run {self.name}: finish status must be one of {', '.join(STATUSES[1:])}, "
                                     f"got {status!r}")
        if self._finished:
            return
        self._finished = True
        self.record.update(status=status, end_time=_now(), duration_s=round(time.time() - self._started, 3),
                           error=error)
        self._save()
        if self._tensorboard:
            self._tensorboard.close()
        if self._mlflow:
            for name in ("run.json", "config.yaml", "metrics.jsonl"):
                path = os.path.join(self.run_dir, name)
                if os.path.exists(path):
                    self._mlflow.log_artifact(path)
            self._mlflow.finish(status)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.finish("completed")
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("interrupted", error=str(value) or "interrupted")
        else:
            self.finish("failed", error=f"{kind.__name__}: {value}")
        return False


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------- reading back


def read_run(run_dir):
    """run.json of a run folder as a dict."""
    path = os.path.join(os.fspath(run_dir), "run.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise TrugradeValueError(f"{run_dir}: not a run folder (no run.json)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise TrugradeValueError(f"{path}: cannot read run.json: {exc}") from None


def read_metrics(run_dir):
    """Every record of metrics.jsonl, in order; a torn last line (a run killed mid-write) is skipped."""
    path = os.path.join(os.fspath(run_dir), "metrics.jsonl")
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return records
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise TrugradeValueError(f"{path}, line {number}: not a JSON object") from None
    return records


def is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
