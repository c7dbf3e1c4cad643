"""The notebooks run against the library (short settings), so they cannot drift from it."""

from __future__ import annotations

import json
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import data_dir

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def test_cold_start_movielens_notebook_runs_and_shows_the_table_and_curve(tmp_path, monkeypatch):
  data = data_dir("melu-ml1m")
  monkeypatch.setenv("METAREC_DATA", str(data.parent))
  monkeypatch.setenv("METAREC_NOTEBOOK_QUICK", "1")
  workdir = tmp_path / "run"
  monkeypatch.setenv("METAREC_NOTEBOOK_WORKDIR", str(workdir))
  nb = nbformat.read(NOTEBOOKS / "cold_start_movielens.ipynb", as_version=4)
  NotebookClient(nb, timeout=900, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()

  results = json.loads((workdir / "results.json").read_text())
  got = {(r["method"], r["scenario"]) for r in results["rows"]}
  methods = {"item_mean_user_bias", "melu1"}  # the quick settings' methods
  assert got == {(m, "warm") for m in methods}  # the quick settings' scenario
  sizes = {r["support"] for r in results["support_curve"] if r["method"] == "melu1"}
  assert sizes == {1, 3, 5, 10, 20}
  # The notebook displayed the markdown table (with every method) and both plots.
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
  assert all(f"| {m} |" in markdown for m in methods)
  assert sum("image/png" in o.get("data", {}) for o in outputs) == 2
  assert (workdir / "report" / "mae_by_support_size.png").exists()
