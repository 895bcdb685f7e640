"""The architecture rules a grep can check: Python only in csrc/python, no reference
library imported by the product, no exit()/abort() or printing in library C code."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_C = [p for p in (ROOT / "csrc").rglob("*.[ch]") if not {"fuzz", "tests"} & set(p.parts)]


def test_python_h_only_in_the_binding():
    offenders = [str(p) for p in LIBRARY_C if "Python.h" in p.read_text() and p.parent.name != "python"]
    assert not offenders, offenders


def test_library_c_never_exits_aborts_or_prints():
    pattern = re.compile(r"\b(exit|abort|printf|puts|perror)\s*\(")
    offenders = []
    for p in LIBRARY_C:
        for number, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("//")[0]
            if pattern.search(code) and "snprintf" not in code and "vsnprintf" not in code:
                offenders.append(f"{p.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_product_does_not_import_reference_libraries():
    pattern = re.compile(r"^\s*(import|from)\s+(torch|torchvision|onnxruntime|sklearn|pycocotools|PIL|pydicom)\b", re.M)
    offenders = [str(p) for p in (ROOT / "trugrade").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders
