"""The `trugrade` command: subcommands registered in one table.

    trugrade validate DATASET [--json out.json] [--html report.html]
    trugrade dataset create --task TASK --from PATH --out PATH
    trugrade dataset convert SOURCE --to yolo|coco --out PATH
    trugrade dataset stats DATASET [--json]
    trugrade dataset tasks

To add a command, write `configure(parser)` (adds its arguments) and `run(args) -> exit code`
and append one `register(...)` line at the bottom. A TrugradeError ends the command with its
message on stderr and exit code 2; `validate` exits with 1 when it finds fatal problems.
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
        command.set_defaults(run=run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except TrugradeError as exc:
        print(f"trugrade {args.command}: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- validate


def _configure_validate(parser):
    parser.add_argument("dataset", help="a dataset folder, a manifest file or a folder made by `dataset create`")
    parser.add_argument("--json", metavar="PATH", help="write the findings as JSON")
    parser.add_argument("--html", metavar="PATH", help="write a self-contained HTML report")
    parser.add_argument("--predictions", metavar="NPY",
                        help="class probabilities [samples, classes] of a trained model: look for label errors")
    parser.add_argument("--fast", action="store_true", help="headers only: no pixel or near-duplicate checks")
    parser.add_argument("--threads", type=int, help="threads reading files (default: one per core)")
    parser.add_argument("--num-classes", type=int, help="classes of a segmentation set (mask values)")


def _run_validate(args):
    from .validator import validate_dataset
    report = validate_dataset(args.dataset, predictions=args.predictions, mode="header" if args.fast else "decode",
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


register("validate", "check a dataset: files, labels, balance, quality, duplicates, label errors",
         _configure_validate, _run_validate)
register("dataset", "create, convert and describe datasets", _configure_dataset, _run_dataset)
