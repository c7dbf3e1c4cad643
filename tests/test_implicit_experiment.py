"""A whole implicit-feedback run: metrics, candidate statement, identical negatives for every method."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metarec_jax import ConfigError, experiment, validate
from tests.conftest import make_implicit, tiny_config

METRICS = ("auc", "logloss", "hr@5", "ndcg@5", "mrr@5")


def implicit_config():
  c = make_implicit(tiny_config(), metrics=METRICS, scenarios=("warm", "user_cold"))
  c.data.negative_sampling = "popularity"
  c.methods = ("popularity", "pooled", "pooled_finetune", "maml_bpr")  # the pooled model trains with BCE
  c.variants.maml_bpr = ("meta.learner=maml", "meta.loss=bpr")
  c.train.steps = 4
  c.train.eval_every = 2
  c.eval.finetune_lrs = (0.1,)
  return c


@pytest.fixture(scope="module")
def implicit_run(tmp_path_factory):
  c = implicit_config()
  c.eval.candidates = "sampled,all"  # 99 sampled negatives, and all unseen items as tables "<scenario>:all"
  seen = {}
  from metarec_jax.eval import evaluate
  original = evaluate.score_set

  def recording(prep, pred, batch, name, metrics):  # every method's candidates, per scenario
    seen.setdefault(name, []).append(np.asarray(batch.query_items).copy())
    return original(prep, pred, batch, name, metrics)

  evaluate.score_set = recording
  try:
    wd = tmp_path_factory.mktemp("implicit") / "wd"
    results = experiment.run(c, wd, progress=False, verbose=False)
  finally:
    evaluate.score_set = original
  return c, wd, results, seen


def test_implicit_run_reports_ranking_metrics_and_the_candidates(implicit_run):
  c, wd, results, _ = implicit_run
  assert len(results["rows"]) == len(c.methods) * 4
  assert {r["scenario"] for r in results["rows"]} == {"warm", "user_cold", "warm:all", "user_cold:all"}
  for r in results["rows"]:
    assert set(r) == {"method", "scenario", "seed", "tasks", *METRICS}
    assert 0 <= r["auc"] <= 1 and 0 <= r["hr@5"] <= 1 and r["mrr@5"] <= r["hr@5"] and r["logloss"] > 0
  md = (wd / "results.md").read_text()
  assert "19 negatives sampled uniformly" in md and "value >= 4" in md and "### user_cold:all" in md
  assert "in the tables named `<scenario>:all`, every item of the scenario's catalogue" in md
  pop = {r["scenario"]: r for r in results["rows"] if r["method"] == "popularity"}
  assert pop["warm"]["auc"] > 0.5  # popularity beats a random ranking on synthetic data with popular items
  log = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
  assert any("val_1-auc" in x for x in log)


def test_every_method_ranks_the_same_candidates(implicit_run):
  c, _, _, seen = implicit_run
  for scenario, batches in seen.items():
    assert len(batches) == len(c.methods)
    for b in batches[1:]:
      np.testing.assert_array_equal(b, batches[0])


def test_same_seed_same_negatives():
  c = implicit_config()
  a, b = experiment.prepare(c, 0), experiment.prepare(c, 0)
  for s in a.test_batches:
    np.testing.assert_array_equal(a.test_batches[s].query_items, b.test_batches[s].query_items)
    np.testing.assert_array_equal(a.test_batches[s].support_items, b.test_batches[s].support_items)
  other = experiment.prepare(c, 1)
  assert not np.array_equal(np.asarray(other.valid_batch.query_items)[:, 1:5],
                            np.asarray(a.valid_batch.query_items)[:, 1:5])


def test_all_unseen_items_as_candidates():
  c = implicit_config()
  c.eval.candidates = "sampled,all"  # both: the second as its own table
  prep = experiment.prepare(c, 0)
  assert prep.layouts["user_cold"].mode == "sampled" and prep.selection["user_cold:all"] == "valid"
  layout = prep.layouts["user_cold:all"]
  assert layout.mode == "all" and layout.width > 19
  batch = prep.test_batches["user_cold:all"]
  seen = np.asarray(prep.features.extra["seen"])
  users = np.asarray(batch.user)
  pool = np.asarray(batch.query_items)[0, c.data.query_size:]
  np.testing.assert_array_equal(np.asarray(batch.query_mask)[:, c.data.query_size:], ~seen[users][:, pool])


@pytest.mark.parametrize("change,message", [
    (("data.feedback", "clicks"), "data.feedback must be one of"),
    (("meta.loss", "mse"), "meta.loss=mse is for ratings"),
    (("eval.metrics", ("mae", "auc")), "are rating metrics"),
    (("eval.metrics", ("hr@20",)), "hr@20"),
    (("eval.candidates", "some"), "eval.candidates must be one of"),
    (("eval.candidates", "all,all"), "eval.candidates must be one of"),
    (("data.negative_sampling", "zipf"), "data.negative_sampling must be one of"),
    (("data.negatives_per_positive", 0), "data.negatives_per_positive must be >= 1"),
    (("methods", ("global_mean",)), "global_mean predicts ratings"),
    (("model.residual", True), "model.residual"),
])
def test_validation_names_the_key(change, message):
  c = implicit_config()
  key, value = change
  node = c
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ConfigError, match=message):
    validate(c)


def test_rating_configs_refuse_implicit_parts():
  c = tiny_config()
  c.meta.loss = "bce"
  with pytest.raises(ConfigError, match="needs data.feedback=implicit"):
    validate(c)
  c = tiny_config()
  c.methods = ("popularity",)
  with pytest.raises(ConfigError, match="implicit-feedback baseline"):
    validate(c)
  c = tiny_config()
  c.data.name = "lastfm"
  with pytest.raises(ConfigError, match="play counts"):
    validate(c)


def test_serving_an_implicit_run_skips_the_baselines_and_writes_nothing(implicit_run):
  from metarec_jax.serving import Recommender
  _, wd, _, _ = implicit_run
  before = sorted(p.name for p in (wd / "checkpoints").iterdir())
  rec = Recommender.load(wd)  # the first method, popularity, has no model: the first learned one serves
  assert rec.name == "pooled"
  with pytest.raises(ValueError, match="popularity' is a baseline"):
    Recommender.load(wd, method="popularity")
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    Recommender.load(wd, method="maml_bpr", seed=3)  # a seed the run never trained
  assert sorted(p.name for p in (wd / "checkpoints").iterdir()) == before  # no empty folder left behind
  assert "popularity__seed0" not in before
