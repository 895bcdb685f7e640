"""The `trugrade` command: subcommands registered in one table.

    trugrade train CONFIG [--set k=v ...] [--resume RUN] [--name NAME] [--no-check]
    trugrade eval RUN_OR_CHECKPOINT --data PATH
    trugrade predict CHECKPOINT IMAGES... [--out DIR]   (segmentation: masks + probability maps)
    trugrade export RUN_OR_VERSION --format onnx|safetensors|package --out PATH [--float16] [--int8 --calib PATH]
    trugrade validate DATASET [--json out.json] [--html report.html] [--model RUN]
    trugrade dataset create --task TASK --from PATH --out PATH
    trugrade dataset convert SOURCE --to yolo|coco --out PATH
    trugrade dataset stats DATASET [--json]
    trugrade dataset tasks
    trugrade runs list [--dir runs]
    trugrade runs compare RUN RUN ... [--metrics val_accuracy,val_loss] [--plot curves.png]
    trugrade registry list|register|activate|rollback|export|import|compare ... [--registry DIR]

To add a command, write `configure(parser)` (adds its arguments) and `run(args) -> exit code`
and append one `register(...)` line at the bottom. A TrugradeError ends the command with its
message on stderr ("trugrade: error: ...") and exit code 2; `validate` exits with 1 when it finds fatal problems.
"""
import argparse
import json
import sys

from .errors import TrugradeError

COMMANDS = {}  # name -> (help, configure, run)


def register(name, help, configure, run):
    """Adds the subcommand `name`: configure(parser) adds its arguments, run(args) returns the exit code."""
    COMMANDS[name] = (help, configure, run)


def build_parser():
    parser = argparse.ArgumentParser(prog="trugrade", description="Train, check and ship image models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_text, configure, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        configure(command)
        command.set_defaults(command_function=run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return int(args.command_function(args) or 0)
    except TrugradeError as exc:
        print(f"trugrade: error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- validate


def _configure_validate(parser):
    parser.add_argument("dataset", help="a dataset folder, a manifest file or a folder made by `dataset create`")
    parser.add_argument("--json", metavar="PATH", help="write the findings as JSON")
    parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument("--predictions", metavar="NPY",
                        help="class probabilities [samples, classes] of a trained model: look for label errors")
    parser.add_argument("--model", metavar="RUN",
                        help="a run (folder or name) or checkpoint trained on this dataset: look for label errors "
                             "with its predictions (confident learning)")
    parser.add_argument("--fast", action="store_true", help="headers only: no pixel or near-duplicate checks")
    parser.add_argument("--threads", type=int, help="threads reading files (default: one per core)")
    parser.add_argument("--num-classes", type=int, help="classes of a segmentation set (mask values)")


def _run_validate(args):
    from .validator import validate_dataset
    report = validate_dataset(args.dataset, predictions=args.predictions, model=args.model,
                              mode="header" if args.fast else "decode",
                              threads=args.threads, num_classes=args.num_classes, json_path=args.json,
                              html_path=args.html)
    print(report.summary())
    return 1 if report.fatal else 0


# --------------------------------------------------------------------------- dataset


def _configure_dataset(parser):
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    create = sub.add_parser("create", help="make a dataset folder: manifest, splits, suggested config")
    create.add_argument("--task", required=True, help="category/task (see `trugrade dataset tasks`)")
    create.add_argument("--from", dest="source", required=True, help="folder of images and annotations")
    create.add_argument("--out", required=True, help="folder to write")
    create.add_argument("--split", nargs=3, type=float, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"))
    create.add_argument("--seed", type=int, default=0)
    create.add_argument("--copy", action="store_true", help="copy the files under OUT/data")
    create.add_argument("--num-classes", type=int, help="classes of a segmentation set, background included")
    convert = sub.add_parser("convert", help="convert a detection dataset between COCO and YOLO")
    convert.add_argument("source", help="a COCO, YOLO or Pascal VOC dataset folder")
    convert.add_argument("--to", required=True, choices=("coco", "yolo"))
    convert.add_argument("--out", required=True)
    stats = sub.add_parser("stats", help="counts, sizes, channels and balance of a dataset")
    stats.add_argument("dataset")
    stats.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("tasks", help="list the task categories and tasks")


def _run_dataset(args):
    from . import creator
    if args.action == "create":
        result = creator.create(args.task, args.source, args.out, split=tuple(args.split), seed=args.seed,
                                copy=args.copy, num_classes=args.num_classes)
        st = result["stats"]
        print(f"created {args.out} for {result['task']}: {st['n_images']} samples {st['splits']}\n"
              f"  manifest: {result['manifest']}\n  config:   {result['config']} (edit it, then train with it)")
    elif args.action == "convert":
        n = creator.convert(args.source, args.out, to=args.to)
        print(f"converted {n} images to {args.to} in {args.out}")
    elif args.action == "stats":
        st = creator.stats(args.dataset)
        print(f"{args.dataset}:")
        if args.json:
            print(json.dumps(st, indent=1))
        else:
            for key, value in st.items():
                print(f"  {key}: {value}")
    else:
        for category, names in creator.CATEGORIES.items():
            print(category)
            for name in names:
                spec = creator.TASKS[f"{category}/{name}"]
                print(f"  {spec.key:<45} {spec.output:<8} formats: {', '.join(spec.formats):<16} "
                      f"archs: {', '.join(spec.architectures[:4])}")
    return 0


def _print(text=""):
    sys.stdout.write(f"{text}\n")


# --------------------------------------------------------------------------- runs


def _configure_runs(group):
    """`trugrade runs list|compare`: the runs of a runs folder."""
    from . import runs

    commands = group.add_subparsers(dest="runs_command", required=True, metavar="{list,compare}")

    def do_list(args):
        entries = runs.list_runs(args.dir)
        if not entries:
            _print(f"no runs in {args.dir}")
            return 0
        columns = ["name", "status", "arch", "epochs", "val_loss", "val_accuracy", "start_time"]
        _print(runs.format_table(columns, [[entry[c] for c in columns] for entry in entries]))
        return 0

    def do_compare(args):
        table = runs.compare(args.runs, metrics=args.metrics, directory=args.dir)
        _print(runs.format_table(table["metrics"]["columns"], table["metrics"]["rows"]))
        _print()
        if table["hyperparameters"]["rows"]:
            _print("hyperparameters that differ:")
            _print(runs.format_table(table["hyperparameters"]["columns"], table["hyperparameters"]["rows"]))
        else:
            _print("no hyperparameter differs")
        if args.plot:
            metric = (args.metrics.split(",")[0].strip() if args.metrics else
                      (table["metrics"]["columns"][1].rsplit(" ", 1)[0] if len(table["metrics"]["columns"]) > 1
                       else None))
            if metric is None:
                _print("nothing to plot: no metric was logged")
            else:
                _print(f"wrote {runs.plot_curves(args.runs, metric, args.plot, directory=args.dir)}")
        return 0

    listing = commands.add_parser("list", help="one line per run")
    listing.add_argument("--dir", default="runs", help="the runs folder (default: runs)")
    listing.set_defaults(handler=do_list)
    comparing = commands.add_parser("compare", help="chosen metrics (final and best) and the hyperparameters that "
                                                    "differ")
    comparing.add_argument("runs", nargs="+", help="run names (in --dir) or run folders")
    comparing.add_argument("--metrics", help="comma-separated metrics (default: every per-epoch metric)")
    comparing.add_argument("--dir", default="runs", help="the runs folder (default: runs)")
    comparing.add_argument("--plot", metavar="PNG", help="also draw the first metric's curves to this file")
    comparing.set_defaults(handler=do_compare)


# --------------------------------------------------------------------------- registry


def _configure_registry(group):
    """`trugrade registry ...`: the model registry."""
    from . import registry as reg

    commands = group.add_subparsers(dest="registry_command", required=True,
                                    metavar="{list,register,activate,rollback,export,import,compare}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--registry", metavar="DIR",
                        help="registry folder (default: $TRUGRADE_REGISTRY, else ~/.trugrade/registry)")

    def version_line(entry, active_tasks=()):
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(entry.metrics.items()))
        marker = f"  [active: {', '.join(active_tasks)}]" if active_tasks else ""
        return (f"{entry.ref:<24} task {entry.task}  {entry.architecture}  {entry.created_at[:19]}  "
                f"sha256 {entry.sha256[:12]}  {metrics}{marker}")

    def do_list(args):
        registry = reg.Registry(args.registry)
        found = registry.search(name=args.name, task=args.task, architecture=args.arch, metric=args.metric,
                                min_value=args.min, max_value=args.max, since=args.since, until=args.until)
        active = {}
        for task, entry in registry.tasks().items():
            active.setdefault(entry.id, []).append(task)
        if not found:
            _print(f"no model versions match in {registry.root}")
        for entry in found:
            _print(version_line(entry, active.get(entry.id, ())))
        return 0

    def do_register(args):
        registry = reg.Registry(args.registry)
        entry = registry.register(
            args.checkpoint, args.name, task=args.task, architecture=args.arch, num_classes=args.num_classes,
            in_channels=args.in_channels, input_size=args.input_size,
            classes=args.classes.split(",") if args.classes else None,
            metrics=json.loads(args.metrics) if args.metrics else None, run=args.run, dataset_hash=args.dataset_hash)
        _print(f"registered {version_line(entry)}")
        if args.activate:
            registry.activate(entry)
            _print(f"activated {entry.ref} for task {entry.task}")
        return 0

    def do_activate(args):
        registry = reg.Registry(args.registry)
        entry = registry.activate(args.name, args.version, task=args.task)
        _print(f"task {args.task or entry.task} now serves {entry.ref}")
        return 0

    def do_rollback(args):
        entry = reg.Registry(args.registry).rollback(args.task)
        _print(f"task {args.task} rolled back to {entry.ref}")
        return 0

    def do_export(args):
        path = reg.Registry(args.registry).export(args.name, args.output, version=args.version)
        _print(f"wrote {path}")
        return 0

    def do_import(args):
        entry = reg.Registry(args.registry).import_package(args.package, name=args.name, task=args.task)
        _print(f"imported {version_line(entry)}")
        return 0

    def do_compare(args):
        from .runs import format_table
        table = reg.Registry(args.registry).compare(args.versions, batch_size=args.batch_size)
        _print(format_table(table["columns"], table["rows"]))
        return 0

    listing = commands.add_parser("list", parents=[common], help="versions, filtered")
    listing.add_argument("--name")
    listing.add_argument("--task")
    listing.add_argument("--arch")
    listing.add_argument("--metric", help="metric bounded by --min / --max")
    listing.add_argument("--min", type=float)
    listing.add_argument("--max", type=float)
    listing.add_argument("--since", help="registered on or after (ISO date or time)")
    listing.add_argument("--until", help="registered on or before (ISO date or time)")
    listing.set_defaults(handler=do_list)

    registering = commands.add_parser("register", parents=[common], help="add a checkpoint as a new version")
    registering.add_argument("checkpoint", help="a .safetensors checkpoint")
    registering.add_argument("--name", required=True, help="the model's name")
    registering.add_argument("--task", help="the task it serves (default: the name)")
    registering.add_argument("--run", help="the run folder it came from (config, dataset hash, final metrics)")
    registering.add_argument("--arch", help="architecture (default: from the checkpoint or run)")
    registering.add_argument("--num-classes", type=int)
    registering.add_argument("--in-channels", type=int)
    registering.add_argument("--input-size", type=int)
    registering.add_argument("--classes", help="comma-separated class names")
    registering.add_argument("--metrics", help='JSON object, e.g. \'{"val_accuracy": 0.91}\'')
    registering.add_argument("--dataset-hash")
    registering.add_argument("--activate", action="store_true", help="also activate it for its task")
    registering.set_defaults(handler=do_register)

    activating = commands.add_parser("activate", parents=[common], help="serve a version for a task")
    activating.add_argument("name")
    activating.add_argument("version", type=int)
    activating.add_argument("--task", help="the task (default: the version's task)")
    activating.set_defaults(handler=do_activate)

    rolling = commands.add_parser("rollback", parents=[common], help="serve the task's previous version again")
    rolling.add_argument("task")
    rolling.set_defaults(handler=do_rollback)

    exporting = commands.add_parser("export", parents=[common], help="write a version as a .tgpkg package")
    exporting.add_argument("name")
    exporting.add_argument("version", type=int)
    exporting.add_argument("output", help="the package file to write (.tgpkg)")
    exporting.set_defaults(handler=do_export)

    importing = commands.add_parser("import", parents=[common], help="register the model of a .tgpkg package")
    importing.add_argument("package")
    importing.add_argument("--name", help="register under this name (default: the package's)")
    importing.add_argument("--task", help="its task (default: the package's)")
    importing.set_defaults(handler=do_import)

    comparing = commands.add_parser("compare", parents=[common], help="versions side by side (metrics, size, speed)")
    comparing.add_argument("versions", nargs="+", help="name:version references")
    comparing.add_argument("--batch-size", type=int, default=8, help="batch timed (default: 8)")
    comparing.set_defaults(handler=do_compare)


def _run_handler(args):
    """Runs the handler a group's subcommand set with set_defaults(handler=...)."""
    return args.handler(args)


# --------------------------------------------------------------------------- train, eval, predict


def _configure_train(parser):
    parser.add_argument("config", nargs="?", help="a YAML config (optional with --resume)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides, e.g. optim.lr=0.01")
    parser.add_argument("--preset", choices=("quick", "standard", "intensive"))
    parser.add_argument("--resume", metavar="RUN", help="continue this run (its folder or name)")
    parser.add_argument("--allow-config-change", action="store_true", help="resume even if the config differs")
    parser.add_argument("--name", help="run name (default: the config's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-check", action="store_true",
                        help="train even when the dataset preflight finds fatal problems (they are still printed)")


def _run_train(args):
    from .train import train
    if not args.config and not args.resume:
        raise TrugradeError("train needs a CONFIG, or --resume RUN")
    run = train(args.config, overrides=args.set, preset=args.preset, name=args.name, resume=args.resume,
                progress=not args.no_progress, allow_config_change=args.allow_config_change,
                check_dataset=not args.no_check)
    print(f"run {run.dir}: {run.status}")
    if run.metrics:
        print("  last epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in run.metrics[-1].items() if isinstance(v, float)))
    if run.test and "accuracy" not in run.test:
        print(f"  test iou {run.test['iou']:.4f}, f1 {run.test['f1']:.4f}, mean iou {run.test['miou']:.4f}, "
              f"pixel accuracy {run.test['pixel_accuracy']:.4f}, loss {run.test['loss']:.4f}\n"
              f"  report: {run.report_path}")
    elif run.test:
        print(f"  test accuracy {run.test['accuracy']:.4f}, macro F1 {run.test['macro']['f1']:.4f}, "
              f"loss {run.test['loss']:.4f}\n  report: {run.report_path}")
    return 0 if run.status in ("completed", "interrupted") else 1


def _configure_eval(parser):
    parser.add_argument("checkpoint", help="a run folder or a checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, help="dataset folder (IDX) whose test split is evaluated")


def _run_eval(args):
    import numpy as np
    from . import config as configlib
    from . import metrics
    from .predict import load_model
    from .train import load_data
    model = load_model(args.checkpoint)
    cfg = configlib.from_mapping(model.metadata["config"], overrides=[f"data.path={args.data}"])
    splits, _ = load_data(cfg)
    images, labels = splits.get("test") or splits["val"]
    probabilities = model.predict(images)
    report = metrics.classification_report(labels, probabilities, len(model.classes))
    print(f"{model.arch} on {args.data} ({len(labels)} images): accuracy {report['accuracy']:.4f}, macro F1 "
          f"{report['macro']['f1']:.4f}, ROC AUC {report['roc_auc_macro']:.4f}, ECE {report['ece']:.4f}")
    print("confusion matrix (rows: true):")
    print(np.array2string(report["confusion_matrix"], max_line_width=200))
    return 0


def _configure_predict(parser):
    parser.add_argument("checkpoint", help="a run folder or a checkpoint (.safetensors)")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, DICOM, NPY); tiles for segmentation")
    parser.add_argument("--top", type=int, default=3, help="classes shown per image")
    parser.add_argument("--out", metavar="DIR", help="segmentation: folder for <tile>_mask.png and <tile>_prob.npy")
    parser.add_argument("--threshold", type=float, help="segmentation, 2 classes: foreground probability threshold "
                        "(default: the most probable class)")


def _run_predict(args):
    import numpy as np
    from .data import read_image
    from .predict import load_model
    model = load_model(args.checkpoint)
    if model.task == "segmentation":
        return _predict_tiles(model, args)
    for path in args.images:
        probabilities = model.predict(read_image(path)[None])[0]
        best = np.argsort(-probabilities)[:args.top]
        print(f"{path}: " + ", ".join(f"{model.classes[i]} {probabilities[i]:.3f}" for i in best))
    return 0


def _predict_tiles(model, args):
    import time
    from .predict import predict_tiles
    if not args.out:
        raise TrugradeError(f"predict: {args.checkpoint} is a segmentation model; give --out DIR for the masks and "
                            "probability maps")
    started = time.perf_counter()
    results = predict_tiles(model, args.images, args.out, threshold=args.threshold, stream=sys.stdout)
    wall = time.perf_counter() - started
    model_seconds = sum(r["seconds"] for r in results)
    print(f"{len(results)} tiles: {len(results) / max(model_seconds, 1e-9):.2f} tiles/s predicting "
          f"({len(results) / max(wall, 1e-9):.2f} tiles/s with reading and writing); written to {args.out}")


def _configure_export(parser):
    parser.add_argument("checkpoint", metavar="RUN_OR_VERSION",
                        help="a run folder, a checkpoint (.safetensors), or a registry version name:version "
                             "(or name, its latest)")
    parser.add_argument("--format", required=True, choices=("onnx", "safetensors", "package"),
                        help="onnx: opset 17 for onnxruntime/TensorRT; safetensors: torchvision names for PyTorch; "
                             "package: a portable registry package (.tgpkg)")
    parser.add_argument("--out", required=True, metavar="PATH", help="the file to write")
    parser.add_argument("--float16", action="store_true", help="onnx only: float16 weights and compute")
    parser.add_argument("--int8", action="store_true",
                        help="onnx only: int8 post-training quantization (QDQ), calibrated on --calib")
    parser.add_argument("--calib", metavar="PATH",
                        help="calibration images for --int8: a folder of images or of IDX files, an IDX file or .npy")
    parser.add_argument("--calib-limit", type=int, default=512, metavar="N",
                        help="calibration images used at most (a fixed random choice; default 512)")
    parser.add_argument("--registry", metavar="DIR", help="the registry folder for a name:version reference")


def _export_package(args):
    import os
    import tempfile

    from . import registry as reg
    if not os.path.exists(args.checkpoint):
        return reg.Registry(args.registry).export(args.checkpoint, args.out)
    from .predict import load_model
    checkpoint = load_model(args.checkpoint).path
    # NOTE: a package is made from a registry version; a run or checkpoint goes through a
    # throwaway registry (its metadata comes from the checkpoint, as at registration).
    with tempfile.TemporaryDirectory() as folder:
        name = os.path.basename(os.path.normpath(args.checkpoint)).replace(".safetensors", "") or "model"
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-") or "model"
        temporary = reg.Registry(folder)
        entry = temporary.register(checkpoint, name)
        return temporary.export(entry, args.out)


def _run_export(args):
    from .export import export_onnx, export_safetensors, load_source
    if (args.int8 or args.float16 or args.calib) and args.format != "onnx":
        raise TrugradeError(f"export: --int8, --calib and --float16 apply to --format onnx, not {args.format}")
    if args.int8 and not args.calib:
        raise TrugradeError("export: --int8 needs --calib PATH (calibration images: a folder, an IDX file or .npy)")
    if args.format == "package":
        path = _export_package(args)
        print(f"wrote {path} (package of {args.checkpoint})")
        return 0
    model = load_source(args.checkpoint, registry=args.registry)
    if args.format == "onnx":
        export_onnx(model, args.out, float16=args.float16, int8=args.int8, calib=args.calib,
                    calib_limit=args.calib_limit)
    else:
        export_safetensors(model, args.out)
    kind = f"{args.format}{', int8 QDQ' if args.int8 else ''}{', float16' if args.float16 else ''}"
    print(f"wrote {args.out} ({kind}, {model.arch}, {len(model.classes)} classes, input {model.input_size})")
    return 0


register("train", "train a model from a config (or resume a run)", _configure_train, _run_train)
register("eval", "evaluate a trained model on a dataset's test split", _configure_eval, _run_eval)
register("predict", "class probabilities of image files; masks and probability maps of tiles", _configure_predict,
         _run_predict)
register("export", "write a trained model or registry version as ONNX (float32, float16, int8), safetensors or a package", _configure_export, _run_export)
register("validate", "check a dataset: files, labels, balance, quality, duplicates, label errors",
         _configure_validate, _run_validate)
register("dataset", "create, convert and describe datasets", _configure_dataset, _run_dataset)
register("runs", "list and compare training runs", _configure_runs, _run_handler)
register("registry", "register, activate, roll back, export and import models", _configure_registry, _run_handler)


if __name__ == "__main__":
    sys.exit(main())
