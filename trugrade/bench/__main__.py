"""python -m trugrade.bench SECTION [OPTIONS]: runs a benchmark section (see trugrade.bench).

Every section takes --quick; a section module may add its own options with
add_arguments(parser) (see `python -m trugrade.bench SECTION --help`)."""
import argparse
import importlib
import sys

# section -> modules of trugrade.bench whose run(args) it calls, in order
SECTIONS = {
    "ops": ["gemm", "conv", "overhead"],
    "validate": ["validate"],
    "data": ["data"],
    "train": ["train"],
    "fashion": ["fashion"],
    "int8": ["int8"],
    "predict": ["predict"],
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    top = argparse.ArgumentParser(prog="python -m trugrade.bench",
                                  epilog="python -m trugrade.bench SECTION --help lists the section's options")
    top.add_argument("section", choices=sorted(SECTIONS))
    section = top.parse_args(argv[:1]).section
    modules = [importlib.import_module(f"trugrade.bench.{name}") for name in SECTIONS[section]]
    parser = argparse.ArgumentParser(prog=f"python -m trugrade.bench {section}")
    parser.add_argument("--quick", action="store_true", help="fewer shapes, steps and repeats")
    for module in modules:
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    args.section = section
    for module in modules:
        module.run(args)


if __name__ == "__main__":
    main()
