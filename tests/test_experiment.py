"""The whole run: determinism, resume, re-evaluation, smoke test, bad input."""

from __future__ import annotations

import json
import re
import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from metarec_jax import ConfigError, apply_overrides, experiment, load_experiment, validate
from tests.conftest import tiny_config, tree_allclose

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """One tiny run of all baselines and two learners (shared by several tests)."""
  c = tiny_config()
  c.methods = ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml")
  wd = tmp_path_factory.mktemp("run") / "wd"
  results = experiment.run(c, wd, progress=False, verbose=False)
  return c, wd, results


def test_run_writes_the_documented_files(finished_run):
  c, wd, results = finished_run
  for name in ("config.json", "metrics.jsonl", "results.json", "results.md"):
    assert (wd / name).exists(), name
  rows = json.loads((wd / "results.json").read_text())["rows"]
  assert rows == results["rows"]
  assert len(rows) == len(c.methods) * len(c.eval.scenarios)
  for r in rows:
    assert set(r) == {"method", "scenario", "seed", "mae", "rmse", "ndcg@3", "ndcg@5", "tasks"}
    assert r["scenario"] in ("warm", "user_cold", "item_cold", "user_item_cold")
    assert 0 < r["mae"] < 4 and 0 <= r["ndcg@3"] <= 1 and r["tasks"] > 0
  log = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
  steps = [r for r in log if r.get("method") == "maml" and "loss" in r]
  assert steps and all({"step", "loss", "grad_norm", "tasks_per_s", "param_norm"} <= set(r) for r in steps)
  md = (wd / "results.md").read_text()
  assert "### user_cold" in md and "±" in md and "**" in md
  assert (wd / "checkpoints" / "maml__seed0").is_dir()


def test_same_seed_same_results(finished_run, tmp_path):
  c, wd, _ = finished_run
  experiment.run(c, tmp_path / "again", progress=False, verbose=False)
  assert (tmp_path / "again" / "results.json").read_text() == (wd / "results.json").read_text()


def test_reevaluating_a_checkpoint_gives_the_same_numbers(finished_run):
  _, wd, results = finished_run
  again = experiment.evaluate_workdir(wd, progress=False)
  assert again["rows"] == results["rows"]


def test_rerun_of_a_finished_workdir_reuses_it(finished_run):
  c, wd, results = finished_run
  assert experiment.run(c, wd, progress=False, verbose=False)["rows"] == results["rows"]


def test_interrupted_run_resumes_to_the_same_params_and_results(tmp_path):
  c = tiny_config()
  c.methods = ("maml",)
  straight = experiment.run(c, tmp_path / "straight", progress=False, verbose=False)

  class Killed(Exception):
    pass

  def kill_at_step_6(name, seed, step):
    if step == 6:
      raise Killed

  with pytest.raises(Killed):
    experiment.run(c, tmp_path / "resumed", progress=False, verbose=False, on_step=kill_at_step_6)
  assert not (tmp_path / "resumed" / "results.json").exists()
  resumed = experiment.run(c, tmp_path / "resumed", progress=False, verbose=False)
  assert resumed["rows"] == straight["rows"]
  # The final states are equal too, not just the metrics.
  def final(wd):
    with ocp.CheckpointManager((wd / "checkpoints" / "maml__seed0").absolute()) as mgr:
      return mgr.restore(mgr.latest_step())
  a, b = final(tmp_path / "straight"), final(tmp_path / "resumed")
  assert tree_allclose(a["state"]["params"], b["state"]["params"], rtol=0, atol=0)
  assert tree_allclose(a["best"], b["best"], rtol=0, atol=0)


def test_vectorized_seeds_and_rates_equal_separate_runs(finished_run, tmp_path):
  """train.vectorize: maml and a variant at other rates, seeds 0 and 1, as one population of four.

  (Resuming a killed population, and its checkpoints' format: tests/train/test_population.py.)
  """
  c0, _, separate = finished_run
  c = tiny_config()
  c.methods = ("maml", "fast")
  c.variants.fast = ("meta.inner_lr=0.3", "optimizer.lr=0.003")
  c.eval.scenarios = ("warm", "user_cold")
  c.num_seeds = 2
  c.train.vectorize = True
  wd = tmp_path / "vectorized"
  rows = experiment.run(c, wd, progress=False, verbose=False)["rows"]
  assert {d.name for d in (wd / "checkpoints").iterdir()} == {f"{m}__seed{s}" for m in c.methods for s in (0, 1)}
  # each member equals its separate run (own offset, rates, PRNG stream and data; float tolerance)
  c1 = tiny_config()
  c1.methods, c1.eval.scenarios = ("fast",), c.eval.scenarios
  c1.variants.fast = c.variants.fast
  fast = experiment.run(c1, None, progress=False, verbose=False)["rows"]
  maml = [r for r in separate["rows"] if r["method"] == "maml" and r["scenario"] in c.eval.scenarios]
  for name, ref in (("maml", maml), ("fast", fast)):
    got = [r for r in rows if r["seed"] == 0 and r["method"] == name]
    assert [(r["scenario"], r["tasks"]) for r in got] == [(r["scenario"], r["tasks"]) for r in ref]
    for a, b in zip(got, ref):
      np.testing.assert_allclose([a[k] for k in c0.eval.metrics], [b[k] for k in c0.eval.metrics], rtol=1e-5)
  by = {(r["method"], r["seed"], r["scenario"]): r["mae"] for r in rows}
  assert len(set(by.values())) == len(by) == 2 * 2 * len(c.eval.scenarios)  # the members really differ
  log = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
  assert {(r["method"], r["seed"]) for r in log if r.get("step") == 12 and "loss" in r} == {
      (m, s) for m in c.methods for s in (0, 1)}


def test_smoke_quickstart_shrunk(tmp_path):
  c = load_experiment(REPO / "experiments" / "quickstart.py")
  shrink = tiny_config()
  c.data.synthetic = shrink.data.synthetic
  c.model.embed_dim = 4
  c.model.head_hidden = (8,)
  c = apply_overrides(c, ["train.steps=4", "train.eval_every=2", "train.tasks_per_batch=8",
                          "eval.tasks_per_chunk=64", "eval.finetune_lrs=0.01", "eval.finetune_steps=1",
                          "eval.bias_regs=1.0", "model.user_mlp=4", "model.item_mlp=4"])
  results = experiment.run(c, tmp_path / "q", progress=False, verbose=False)
  methods = {r["method"] for r in results["rows"]}
  assert methods == set(c.methods)
  assert {r["scenario"] for r in results["rows"]} == {"warm", "user_cold", "item_cold", "user_item_cold"}


def test_nan_stops_the_run_with_step_and_metric(tmp_path):
  c = tiny_config()
  c.methods = ("maml",)
  c.optimizer.lr = 1e30
  c.train.checkpoint_every = 1
  with pytest.raises(experiment.NonFiniteError,  # recorded, the others go on, then raised (tests/faults/test_nan.py)
                     match=r"maml seed 0: (loss|grad_norm|val_mae) is (nan|inf) at step ([1-9]\d*)") as err:
    experiment.run(c, tmp_path / "nan", progress=False, verbose=False)
  bad_step = int(re.search(r"at step (\d+)", str(err.value)).group(1))
  ckpt = tmp_path / "nan" / "checkpoints" / "maml__seed0"
  assert bad_step > 1  # so that a good checkpoint exists (step 1 trains fine at this rate)
  with ocp.CheckpointManager(ckpt.absolute()) as mgr:
    assert mgr.latest_step() == bad_step - 1  # the last good checkpoint stays
    good = mgr.restore(mgr.latest_step())
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(good["state"]["params"]))
  c.optimizer.lr = 1e-3
  c.meta.inner_lr = 1e30
  with pytest.raises(experiment.NonFiniteError, match=r"val_mae is nan at step 0"):
    experiment.run(c, tmp_path / "nan2", progress=False, verbose=False)


def test_workdir_with_another_config_is_refused(finished_run):
  c, wd, _ = finished_run
  other = apply_overrides(c, ["meta.inner_lr=0.5"])
  with pytest.raises(ConfigError, match=r"(?s)different config \(a finished run.*meta.inner_lr: 0.1 -> 0.5"):
    experiment.run(other, wd, progress=False, verbose=False)


def test_query_size_larger_than_tasks_is_refused_before_compiling(tmp_path):
  c = apply_overrides(tiny_config(), ["data.query_size=35"])
  c.eval.metrics = ("mae", "rmse")
  with pytest.raises(ConfigError, match="tasks need at least data.query_size"):
    experiment.run(c, None, progress=False, verbose=False)


def test_config_validation_catches_bad_values():
  c = tiny_config()
  with pytest.raises(ConfigError, match="optimizer.lr must be > 0"):
    validate(apply_overrides(c, ["optimizer.lr=-1"]))
  with pytest.raises(ConfigError, match="meta.inner_lr must be >= 0"):
    validate(apply_overrides(c, ["meta.inner_lr=-0.1"]))
  with pytest.raises(ConfigError, match="unknown method 'nope'"):
    validate(apply_overrides(c, ["methods=maml,nope"]))
  with pytest.raises(ConfigError, match="k must lie"):
    validate(apply_overrides(c, ["data.query_size=5"]))
  with pytest.raises(ConfigError, match="tasks_per_chunk=3 must divide"):
    validate(apply_overrides(c, ["meta.tasks_per_chunk=3"]))
  with pytest.raises(ConfigError, match="model.ridge_dim must be >= 0"):
    validate(apply_overrides(c, ["model.ridge_dim=-2"]))
  with pytest.raises(ConfigError, match="model.ridge_dim needs model.bias_reg > 0"):
    validate(apply_overrides(c, ["model.ridge_dim=4", "model.bias_reg=0"]))
  with pytest.raises(ConfigError, match="meta.factored must be auto, on or off, got 'false'"):
    validate(apply_overrides(c, ["meta.factored=false"]))


def test_per_scenario_selection_holds_out_each_scenarios_own_users(tmp_path):
  c = apply_overrides(tiny_config(), ["eval.selection=per_scenario", "eval.scenario_valid_share=0.3",
                                      "methods=item_mean_user_bias,pooled_finetune,maml"])
  prep = experiment.prepare(c, 0)
  assert set(prep.valid_batches) == {"valid", "valid_warm", "valid_user_cold", "valid_item_cold",
                                     "valid_user_item_cold"}
  for scenario, batch in prep.test_batches.items():
    assert prep.selection[scenario] == f"valid_{scenario}"
    held = set(np.asarray(prep.valid_batches[f"valid_{scenario}"].user).tolist())
    tested = set(np.asarray(batch.user).tolist())
    assert held and tested and not held & tested
  results = experiment.run(c, tmp_path / "per", progress=False, verbose=False)
  assert len(results["rows"]) == 3 * 4
  log = [json.loads(line) for line in (tmp_path / "per" / "metrics.jsonl").read_text().splitlines()]
  assert any("val_mae_valid_item_cold" in r for r in log if r.get("method") == "maml")
  sel = [r for r in log if r.get("method") == "pooled_finetune" and "selection" in r][0]
  assert set(sel["selection"]) == set(prep.valid_batches)
  assert sel["selected_on"]["item_cold"] == "valid_item_cold"


def test_reevaluation_adds_the_support_curve_without_changing_the_numbers(finished_run, tmp_path):
  import shutil
  _, wd, results = finished_run
  copy = tmp_path / "wd"
  shutil.copytree(wd, copy)
  with pytest.raises(ConfigError, match="may only change"):
    experiment.evaluate_workdir(copy, progress=False, overrides=["train.steps=7"])
  again = experiment.evaluate_workdir(copy, progress=False, overrides=["eval.support_sizes=1,3"])
  assert again["rows"] == results["rows"]
  assert {(r["method"], r["support"]) for r in again["support_curve"]} == {
      (m, k) for m in ("global_mean", "item_mean_user_bias", "pooled", "pooled_finetune", "maml") for k in (1, 3)}
  assert json.loads((copy / "config.json").read_text())["eval"]["support_sizes"] == [1, 3]
  md = (copy / "results.md").read_text()  # results.md shows the curve beside the main tables
  assert "### MAE by support size: warm" in md and "| maml |" in md.split("MAE by support size")[1]
  assert "MAE by support size" not in (wd / "results.md").read_text()  # no curve, no curve tables


def test_train_users_table_scores_the_meta_training_users(finished_run, tmp_path):
  import shutil
  c, wd, results = finished_run
  copy = tmp_path / "wd"
  shutil.copytree(wd, copy)
  again = experiment.evaluate_workdir(copy, progress=False, overrides=["eval.train_users=true"])
  extra = [r for r in again["rows"] if r["scenario"] == experiment.TRAIN_USERS]
  assert [r for r in again["rows"] if r["scenario"] != experiment.TRAIN_USERS] == results["rows"]
  prep = experiment.prepare(apply_overrides(c, ["eval.train_users=true"]), 0)
  assert prep.selection[experiment.TRAIN_USERS] == prep.selection["warm"]
  batch = prep.test_batches[experiment.TRAIN_USERS]
  assert set(np.asarray(batch.user).tolist()) == set(np.unique(prep.split.train.user).tolist())
  assert {r["method"] for r in extra} == set(c.methods)
  assert all(r["tasks"] == prep.train.num_tasks for r in extra)
  assert "### warm:train_users" in (copy / "results.md").read_text()
