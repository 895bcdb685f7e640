"""Shared pieces of the benchmarks: timing, the PyTorch subprocess, the side-by-side table."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_BENCH = Path(__file__).resolve().parents[2] / "bench"


def best_time(fn, repeat=5, min_time=0.2):
    """Best wall time of one call of fn over `repeat` rounds, each round running fn
    enough times to last at least min_time / repeat seconds."""
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(min_time / repeat / once))
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        best = min(best, (time.perf_counter() - start) / loops)
    return best


def torch_environment(threads=2):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["TRUGRADE_BENCH_THREADS"] = str(threads)
    return env


def run_torch(script, *args, threads=2, timeout=1800):
    """Runs bench/<script> with PyTorch's best environment; returns its JSON output (a dict),
    or None with a note when PyTorch or the bench/ folder is not available."""
    path = REPO_BENCH / script
    if not path.exists():
        print(f"  (no {path}: PyTorch side skipped; run from a source checkout)", file=sys.stderr)
        return None
    proc = subprocess.run([sys.executable, str(path), *map(str, args)], env=torch_environment(threads),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        print(f"  PyTorch side failed ({script}): {proc.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(title, rows, columns):
    """rows: list of dicts; columns: list of (key, header, format)."""
    print(f"\n== {title}")
    headers = [h for _, h, _ in columns]
    cells = [[(fmt.format(r[k]) if r.get(k) is not None else "-") for k, _, fmt in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)))
