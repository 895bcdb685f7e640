"""GEMM benchmark: GFLOPS of tg_gemm_f32 / tg_gemm_bf16 (our packed kernels), OpenBLAS through
the same entry (backend='openblas'), and torch.matmul (bench/torch_gemm.py), on square and
conv-like shapes, with 1 and 2 threads, as % of the float32 peak.

Peak: measured, not assumed. _C.fma_peak_gflops() times 24 independent chains of 512-bit FMAs
on one core; that rate / 64 (2 FMA units x 16 lanes x 2 flops) is the AVX-512 clock actually
sustained (it can sit below the 2.8 GHz nominal). Peak for t threads = t x that rate.
bfloat16: our bf16 GEMM widens A and B to float32 while packing and runs the float32
micro-kernel, so on a CPU without AVX512-BF16 its peak is the float32 peak, and that is the
figure its % is taken against (with AVX512-BF16, vdpbf16ps would double it; we do not use it).
"""
from .. import _C
from ..tensor import get_num_threads, set_num_threads
from .common import print_table, run_torch

SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
          (64, 3136, 576), (512, 49, 4608), (128, 784, 1152), (256, 196, 2304)]
NOMINAL_GHZ = 2.8


def _has_avx512_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            return any("avx512_bf16" in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return False


def _gflops(m, n, k, seconds):
    return 2.0 * m * n * k / seconds / 1e9


def run(args):
    quick = getattr(args, "quick", False)
    shapes = [s for s in SHAPES if not (quick and s[0] * s[1] * s[2] > 1024 ** 3)]
    core_peak = max(_C.fma_peak_gflops(0.3) for _ in range(3))
    print(f"\n== gemm: float32 peak per core measured {core_peak:.1f} GFLOPS "
          f"(AVX-512 clock {core_peak / 64:.2f} GHz x 2 FMA units x 16 lanes x 2 flops; "
          f"nominal {NOMINAL_GHZ} GHz would give {NOMINAL_GHZ * 64:.1f})")
    print("   bfloat16 peak = float32 peak: bf16 is widened to f32 while packing"
          + ("" if not _has_avx512_bf16() else " (this CPU has AVX512-BF16, which this GEMM does not use)")
          + "; % columns are against that peak")
    before = get_num_threads()
    try:
        for threads in (1, 2):
            set_num_threads(threads)
            torch = run_torch("torch_gemm.py", *(["--quick"] if quick else []), threads=threads) or {}
            peak = core_peak * threads
            rows = []
            for m, n, k in shapes:
                key = f"{m}x{n}x{k}"
                repeat = 3 if m * n * k >= 1024 ** 3 else 7
                ours = _gflops(m, n, k, _C.gemm_bench(m, n, k, repeat=repeat))
                ours_bf16 = _gflops(m, n, k, _C.gemm_bench(m, n, k, dtype="bfloat16", repeat=repeat))
                blas = _gflops(m, n, k, _C.gemm_bench(m, n, k, backend="openblas", repeat=repeat))
                torch_f32 = torch.get("float32", {}).get(key)
                torch_bf16 = torch.get("bfloat16", {}).get(key)
                rows.append({
                    "shape": key, "ours": ours, "pct": 100.0 * ours / peak, "bf16": ours_bf16,
                    "bf16_pct": 100.0 * ours_bf16 / peak, "openblas": blas, "torch": torch_f32,
                    "torch_pct": (100.0 * torch_f32 / peak) if torch_f32 else None, "torch_bf16": torch_bf16,
                    "ratio": (ours / torch_f32) if torch_f32 else None,
                    "ratio_bf16": (ours_bf16 / torch_bf16) if torch_bf16 else None,
                })
            print_table(f"gemm GFLOPS, {threads} thread{'s' if threads > 1 else ''} "
                        f"(peak {peak:.0f}; ratio = ours / torch, same dtype)", rows, [
                            ("shape", "m x n x k", "{}"), ("ours", "ours f32", "{:.1f}"), ("pct", "% peak", "{:.0f}%"),
                            ("torch", "torch f32", "{:.1f}"), ("torch_pct", "% peak", "{:.0f}%"),
                            ("ratio", "ratio", "{:.2f}x"), ("bf16", "ours bf16", "{:.1f}"),
                            ("bf16_pct", "% peak", "{:.0f}%"), ("torch_bf16", "torch bf16", "{:.1f}"),
                            ("ratio_bf16", "bf16 ratio", "{:.2f}x"), ("openblas", "openblas", "{:.1f}"),
                        ])
    finally:
        set_num_threads(before)
