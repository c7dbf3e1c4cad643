"""Every successor that its paper or RecBole-MetaRec runs on implicit feedback, in one run (one compile each).

TaNP, CMML, ColdNAS's search, LWA, NLBA, MAMO, MetaEmb and MWUF train with
BCE on 0/1 labels, are scored on sampled candidates in the user-cold and
item-cold scenarios, and serve from the run folder. One run keeps the
suite's time down: the data is prepared once and every method compiles
once; each method's own checks on implicit data assert its specifics below.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import metarec_jax.methods.modulation as mod
from metarec_jax.methods import resolve
from metarec_jax.prepared import MAIN_VALID, prepare
from tests.conftest import make_implicit, tiny_config
from tests.methods.test_modulation import small

METHODS = ("tanp", "cmml", "coldnas_search", "lwa", "nlba", "mamo", "metaemb", "mwuf")
SCENARIOS = ("user_cold", "item_cold")


def implicit_config():
  c = make_implicit(tiny_config(), metrics=("auc", "logloss", "ndcg@5"), scenarios=SCENARIOS)
  small(c)
  c.methods = METHODS
  c.train.steps, c.train.eval_every, c.train.checkpoint_every = 4, 2, 4
  c.coldnas_search.top_k = 3
  c.id_warmup.steps, c.id_warmup.items_per_batch, c.id_warmup.pairs = 4, 6, 4
  return c


@pytest.fixture(scope="module")
def implicit_run(tmp_path_factory):
  from metarec_jax import run
  workdir = tmp_path_factory.mktemp("successors_implicit") / "run"
  out = run(implicit_config(), workdir=workdir, progress=False, verbose=False)
  return workdir, out


def test_every_method_trains_with_bce_and_scores_every_scenario(implicit_run):
  workdir, out = implicit_run
  rows = {(r["method"], r["scenario"]): r for r in out["rows"]}
  assert set(rows) == {(m, s) for m in METHODS for s in SCENARIOS}
  for r in rows.values():
    assert 0.0 <= r["auc"] <= 1.0 and np.isfinite(r["logloss"]) and np.isfinite(r["ndcg@5"]), r
  c = implicit_config()
  for name in METHODS:
    method = resolve(name, c)
    assert method.config.meta.loss == "bce" and method.config.data.feedback == "implicit"
  ckpts = {p.name for p in (workdir / "checkpoints").iterdir()}
  assert {f"{m}__seed0" for m in METHODS} <= ckpts
  assert "pooled_item_id__seed0" in ckpts  # metaemb and mwuf share one private base


def test_lwa_and_nlba_use_the_label_rule_under_implicit_feedback():
  c = implicit_config()
  method = resolve("lwa", c)
  assert method.make_model(prepare(method.config, 0)).rule == "label"  # whatever lwa.rule says


def test_the_search_records_its_architecture_and_serves_it(implicit_run):
  from metarec_jax.serving import Recommender
  workdir, _ = implicit_run
  part = json.loads((workdir / "parts" / "coldnas_search__seed0.json").read_text())
  for sel in part["selection"].values():
    ops = mod.parse_ops(sel["ops"])  # every entry parses: valid operators only
    assert len(ops) == 4 and sum(len(o) for o in ops) == 3
    gates = np.asarray(sel["gates"])
    assert gates.shape == (4, 4) and np.all((gates > 0) & (gates < 1))
    assert ops == mod.discretise(np.log(gates / (1 - gates)), 3)
  assert (workdir / "checkpoints" / "coldnas_search_supernet__seed0").is_dir()
  # restoring the method rebuilds the searched architecture from the supernet's checkpoint
  rec = Recommender.load(workdir, method="coldnas_search")
  assert rec.model.ops == mod.parse_ops(part["selection"][MAIN_VALID]["ops"])
  a = rec.adapt([3, 5, 7], [1.0, 0.0, 1.0]).scores()
  b = rec.adapt([3, 5, 7], [0.0, 1.0, 0.0]).scores()
  assert np.all(np.isfinite(a)) and np.max(np.abs(a - b)) > 1e-7


@pytest.mark.parametrize("name", ["tanp", "cmml", "lwa", "mamo"])
def test_the_labels_reach_the_served_scores(implicit_run, name):
  from metarec_jax.serving import Recommender
  workdir, _ = implicit_run
  rec = Recommender.load(workdir, method=name)
  scorer = rec.adapt([3, 5, 7], [1.0, 0.0, 1.0])
  items, _ = scorer.top_k(4)
  assert len(items) == 4 and not set(items.tolist()) & {3, 5, 7}
  other = rec.adapt([3, 5, 7], [0.0, 1.0, 0.0]).scores()
  assert np.all(np.isfinite(other)) and np.max(np.abs(scorer.scores() - other)) > 1e-7
  if name == "mamo":
    assert not rec.caches_items  # the item tower adapts
