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
  for needle in ("### user_cold", "| anil |", "| maml |", "MAE by support size", "K=3", "**",
                 "| validation-selected (seed 0: "):
    assert needle in md, needle
  for png in ("mae_by_scenario.png", "mae_by_support_size.png"):
    data = (tmp_path / "rep" / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_validation_selected_configuration_is_chosen_on_validation_only():
  from metarec_jax.report import mae_overview, validation_selected
  sel = lambda method, seed, warm, cold: {
      "method": method, "seed": seed, "selected_on": {"warm": "valid_warm", "user_cold": "valid_user_cold"},
      "selection": {"valid_warm": {"val_mae": warm}, "valid_user_cold": {"val_mae": cold}}}
  selections = [sel("a", 0, 0.70, 0.80), sel("b", 0, 0.72, 0.74), sel("a", 1, 0.70, 0.70), sel("b", 1, 0.75, 0.70),
                {"method": "c", "seed": 0, "selected_on": {}, "selection": {"valid": {"best_step": 3}}}]
  chosen = validation_selected(selections, ["warm", "user_cold"])
  assert {seed: m for seed, (m, _) in chosen.items()} == {0: "b", 1: "a"}
  assert abs(chosen[0][1] - 0.73) < 1e-12
  # Test MAE: "a" is better on test in seed 0, but the selection never looks at test rows.
  rows = [{"method": m, "scenario": s, "seed": seed, "mae": v} for m, s, seed, v in [
      ("a", "warm", 0, 0.60), ("a", "user_cold", 0, 0.60), ("b", "warm", 0, 0.90), ("b", "user_cold", 0, 0.80),
      ("a", "warm", 1, 0.70), ("a", "user_cold", 1, 0.72), ("b", "warm", 1, 0.71), ("b", "user_cold", 1, 0.73)]]
  table = mae_overview({"rows": rows}, chosen)
  last = [line for line in table.splitlines() if line.startswith("| validation-selected")][-1]
  assert last.startswith("| validation-selected (seed 0: b, seed 1: a) |")
  # warm: mean(0.90, 0.70); cold: mean(0.80, 0.72); ± the sample std (ddof=1)
  assert "0.8000 ± 0.1414" in last and "0.7600 ± 0.0566" in last
  assert "| a | **0.6500 ± 0.0707** |" in table
  assert "sample standard deviation over 2 seeds (ddof=1)" in table


def test_report_tells_settings_apart_instead_of_averaging_them_as_seeds(tmp_path):
  from metarec_jax.report import load_results
  base = apply_overrides(tiny_config(), ["methods=global_mean,maml", "train.steps=2", "eval.scenarios=warm"])
  experiment.run(base, tmp_path / "lr01", progress=False, verbose=False)
  experiment.run(apply_overrides(base, ["meta.inner_lr=0.5"]), tmp_path / "lr05", progress=False, verbose=False)
  merged = load_results([tmp_path / "lr01", tmp_path / "lr05"])
  labels = {r["method"] for r in merged["rows"]}
  # global_mean does not read meta.inner_lr: its rows are the same experiment, counted once.
  assert labels == {"global_mean", "maml [meta.inner_lr=0.1]", "maml [meta.inner_lr=0.5]"}
  assert len([r for r in merged["rows"] if r["method"] == "global_mean"]) == 1
  assert main(["report", str(tmp_path / "lr01"), str(tmp_path / "lr05"), "--out", str(tmp_path / "rep")]) == 0
  md = (tmp_path / "rep" / "report.md").read_text()
  assert "| maml [meta.inner_lr=0.5] |" in md and "2 seed(s)" not in md and "1 seed(s)" in md
  # The same run twice is one experiment, not two seeds.
  again = load_results([tmp_path / "lr01", tmp_path / "lr01"])
  assert len(again["rows"]) == len(load_results([tmp_path / "lr01"])["rows"])
