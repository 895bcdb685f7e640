"""Cases for csrc/ops/reduce.c: sum and mean over lists of dims, keepdim or not."""
import torch

from opcheck import Case, randn

# (shape, dims): leading, trailing, middle, alternating, all (empty list), negative dims,
# size-1 dims, 5-D, and sizes large enough for the parallel paths and 16-lane tails.
REDUCTIONS = [
    ((4, 5), [1]),
    ((4, 5), [0]),
    ((2, 3, 5, 7), [2, 3]),
    ((2, 3, 5, 7), [0, 2, 3]),
    ((2, 3, 5, 7), [-1]),
    ((2, 3, 5, 7), [0, -2]),
    ((2, 3, 5, 7), [1]),
    ((2, 3, 5, 7), []),
    ((1, 1, 9), [2]),
    ((3, 1, 4), [1]),
    ((2, 1, 3, 1, 5), [0, 3]),
    ((2, 4, 3, 6, 5), [1, 3]),
    ((17,), [0]),
    ((64, 300, 7), [0, 2]),
    ((5, 40000), [1]),
    ((70001,), []),
    ((3000, 37), [0]),
]


def _cases():
    cases = []
    for op, fn in (("sum", torch.sum), ("mean", torch.mean)):
        for k, (shape, dims) in enumerate(REDUCTIONS):
            x = randn(*shape, seed=k)
            for keepdim in (False, True):
                def ref(x, dim, keepdim, fn=fn):
                    return fn(x, dim=dim, keepdim=keepdim) if dim else fn(x) if not keepdim else \
                        fn(x, dim=list(range(x.dim())), keepdim=True)
                cases.append(Case(op, [x], ref, attrs={"dim": dims, "keepdim": keepdim},
                                  id=f"{'x'.join(map(str, shape))}_dim{dims}_keep{int(keepdim)}",
                                  rtol=1e-4, atol=2e-5 * max(1, x.size) ** 0.5 if op == "sum" else 1e-5))
    return cases


CASES = _cases()
