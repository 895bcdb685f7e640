"""Every op of the engine, forward and backward, against PyTorch (or finite differences).
Cases come from tests/opcases/*.py; an op in the table without a case fails the suite."""
import importlib
import pkgutil

import pytest

import trugrade
from opcheck import run_case
import opcases


def _all_cases():
    cases = []
    for info in sorted(pkgutil.iter_modules(opcases.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"opcases.{info.name}")
        cases.extend(module.CASES)
    return cases


CASES = _all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name() for c in CASES])
def test_op_matches_reference(case):
    run_case(case)


def test_every_op_in_the_table_has_a_case():
    covered = {c.op for c in CASES}
    missing = sorted(set(trugrade.ops.names()) - covered)
    assert not missing, f"ops without a test case: {missing}"


def test_every_case_names_a_real_op():
    unknown = sorted({c.op for c in CASES} - set(trugrade.ops.names()))
    assert not unknown, f"cases for ops not in the table: {unknown}"
