"""Op test cases, one module per op family, each with a list CASES (see tests/opcheck.py)."""
