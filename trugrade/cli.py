"""The `trugrade` command: one subcommand group per function below, listed in COMMAND_GROUPS.

    trugrade runs list [--dir runs]
    trugrade runs compare RUN RUN ... [--metrics val_accuracy,val_loss] [--plot curves.png]
    trugrade registry list|register|activate|rollback|export|import|compare ... [--registry DIR]

A group function takes the subparsers object, adds its parser(s) and sets `handler` on each
command (a function of the parsed arguments returning the exit status). To add a group, write
its function and append it to COMMAND_GROUPS. A TrugradeError is printed as one line
`trugrade: error: ...` with exit status 2; nothing else is caught.
"""
import argparse
import json
import sys

from .errors import TrugradeError


def _print(text=""):
    sys.stdout.write(f"{text}\n")


# --------------------------------------------------------------------------- runs


def runs_group(subparsers):
    """`trugrade runs list|compare`: the runs of a runs folder."""
    from . import runs

    group = subparsers.add_parser("runs", help="list and compare training runs")
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


def registry_group(subparsers):
    """`trugrade registry ...`: the model registry."""
    from . import registry as reg

    group = subparsers.add_parser("registry", help="register, activate, roll back, export and import models")
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


COMMAND_GROUPS = (runs_group, registry_group)


def build_parser():
    parser = argparse.ArgumentParser(prog="trugrade", description="train, measure and ship image models")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add_group in COMMAND_GROUPS:
        add_group(subparsers)
    return parser


def main(argv=None):
    """Runs the command line argv (default: sys.argv[1:]); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except TrugradeError as exc:
        sys.stderr.write(f"trugrade: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
