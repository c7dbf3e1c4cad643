"""metarec report: merged table, support-size curve and plots from tiny runs."""

from __future__ import annotations

import json

from metarec_jax import apply_overrides, experiment
from metarec_jax.cli import main
from tests.conftest import tiny_config


def test_report_merges_workdirs_and_draws(tmp_path, capsys):
  base = apply_overrides(tiny_config(), ["methods=global_mean,item_mean_user_bias,maml", "eval.support_sizes=1,3",
                                         "train.steps=4"])
  experiment.run(base, tmp_path / "a", progress=False, verbose=False)
  other = apply_overrides(base, ["methods=anil"])
  experiment.run(other, tmp_path / "b", progress=False, verbose=False)
  curve = json.loads((tmp_path / "a" / "results.json").read_text())["support_curve"]
  assert {r["support"] for r in curve} == {1, 3}
  assert len(curve) == 3 * 2 * 4  # methods x sizes x scenarios
  # Fewer support ratings never see more: the K=1 split's support is the first of the K=3 one.
  k1 = [r for r in curve if r["method"] == "item_mean_user_bias" and r["support"] == 1]
  assert all(r["tasks"] > 0 for r in k1)
  assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "rep")]) == 0
  md = (tmp_path / "rep" / "report.md").read_text()
  for needle in ("### user_cold", "| anil |", "| maml |", "MAE by support size", "K=3", "**"):
    assert needle in md, needle
  for png in ("mae_by_scenario.png", "mae_by_support_size.png"):
    data = (tmp_path / "rep" / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
  assert "does not exist" in capsys.readouterr().err
