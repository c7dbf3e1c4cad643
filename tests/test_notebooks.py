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


def test_api_tour_notebook_runs_on_the_synthetic_default(tmp_path, monkeypatch):
  monkeypatch.setenv("METAREC_NOTEBOOK_QUICK", "1")
  workdir = tmp_path / "tour"
  monkeypatch.setenv("METAREC_NOTEBOOK_WORKDIR", str(workdir))
  nb = nbformat.read(NOTEBOOKS / "api_tour.ipynb", as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "\n".join(o.get("text", "") for o in outputs)
  assert "1200 users, 400 items" in text and "top 5 items: [" in text
  first, last = (float(x) for x in text.split("query MSE after adaptation: ")[1].split()[0:6:5])
  assert last < first  # the hand-written meta-training loop learns
  rows = json.loads((workdir / "results.json").read_text())["rows"]
  assert {r["method"] for r in rows} == {"item_mean_user_bias", "maml"}
  markdown = "\n".join(o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {}))
  assert "| maml |" in markdown and sum("image/png" in o.get("data", {}) for o in outputs) == 1
