"""The notebooks run top to bottom (nbclient), on a small subset of the real data."""
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_train_classifier_notebook_runs(monkeypatch):
    monkeypatch.setenv("TRUGRADE_NOTEBOOK_SUBSET", "600")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(NOTEBOOKS / "01_train_classifier.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "test accuracy:" in outputs and "predicted" in outputs


def test_segmentation_notebook_runs(monkeypatch):
    monkeypatch.setenv("TRUGRADE_NOTEBOOK_SUBSET", "16")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports this checkout's trugrade, not an installed one
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NOTEBOOKS.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOKS / "02_segmentation.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "test debris IoU:" in outputs and "threshold" in outputs and "band means measured" in outputs
