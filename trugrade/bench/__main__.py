"""python -m trugrade.bench SECTION: runs a benchmark section (see trugrade.bench)."""
import argparse
import importlib

# section -> modules of trugrade.bench whose run(args) it calls, in order
SECTIONS = {
    "ops": ["gemm", "conv", "overhead"],
    "validate": ["validate"],
    "data": ["data"],
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m trugrade.bench")
    parser.add_argument("section", choices=sorted(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="fewer shapes and repeats")
    args = parser.parse_args(argv)
    for name in SECTIONS[args.section]:
        importlib.import_module(f"trugrade.bench.{name}").run(args)


if __name__ == "__main__":
    main()
