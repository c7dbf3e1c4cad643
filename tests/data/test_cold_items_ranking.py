"""Protocol cold_items_ranking: shares, disjointness, no cold item in training, full ranking end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metarec_jax import config as cfg_lib
from metarec_jax.data import negatives as neg
from metarec_jax.data.implicit import to_implicit
from metarec_jax.data.splits import PROTOCOLS, make_split
from metarec_jax.data.synthetic import SyntheticSpec, make_synthetic
from metarec_jax.eval.implicit import _refuse_full_ranking_metrics, popularity
from metarec_jax.prepared import prepare
from tests.conftest import TINY_SYNTHETIC, make_implicit, tiny_config
from tests.data.test_info import _cli
from tests.data.tiny_files import write_recbole

pytestmark = pytest.mark.filterwarnings("ignore::metarec_jax.data.parsing.DataWarning")


@pytest.fixture(scope="module")
def implicit_data():
  # Threshold 4: some interactions are seen but no positive, so the split of all interactions is exercised.
  return to_implicit(make_synthetic(SyntheticSpec(**TINY_SYNTHETIC)), 4.0)


@pytest.fixture(scope="module")
def prep_matrix(implicit_data):
  return prepare(ranking_config(), 1, implicit_data)


def ranking_config(sampler="matrix", methods=("popularity",)):
  c = make_implicit(tiny_config(), metrics=("recall@3", "ndcg@3", "auc"), scenarios=("cold", "warm"))
  c.data.protocol = "cold_items_ranking"
  c.data.negative_sampler = sampler
  c.eval.candidates = "all"
  c.methods = methods
  return c


def _keys(inter, n):
  return set((inter.user.astype(np.int64) * n + inter.item).tolist())


def test_registered_and_listed_by_data_info(tmp_path, capsys):
  assert "cold_items_ranking" in PROTOCOLS
  rows = [(u, i, 1 + (u * 7 + i) % 5, 100 * u + i) for u in range(1, 7) for i in range(1, 11)]
  inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
      f"u{u}\tm{i}\t{r}\t{t}\n" for u, i, r, t in rows)
  d = write_recbole(tmp_path / "rb", inter=inter, user="", item="")
  rc, out, _ = _cli(["data", "info", str(d), "--protocol", "cold_items_ranking", "--json"], capsys)
  info = json.loads(out)
  assert rc == 0 and set(info["scenarios"]) == {"cold", "warm"}
  assert info["split"]["test_cold"]["ratings"] + info["split"]["valid"]["ratings"] == 2 * 6  # 2 cold items x 6 users
  assert any("2 of 10 items cold" in n for n in info["notes"])


def test_shares_and_disjointness(implicit_data):
  data = implicit_data
  every, n = data.interacted, data.num_items
  split = make_split(data, "cold_items_ranking", 3, cold_item_share=0.2)
  items = np.unique(every.item)
  cv, ct, warm = split.catalogues["valid"], split.catalogues["cold"], split.catalogues["warm"]
  assert len(cv) + len(ct) == round(0.2 * len(items)) and abs(len(cv) - len(ct)) <= 1
  assert not set(cv) & set(ct) and not (set(cv) | set(ct)) & set(warm)
  assert set(cv) | set(ct) | set(warm) == set(items.tolist())
  assert set(split.valid.item) <= set(cv) and set(split.tests["cold"].item) <= set(ct)
  for part in (split.train, split.tests["warm"], split.extra_valid["valid_warm"], split.seen):
    assert set(part.item) <= set(warm)
  # Every positive in exactly one role; the roles' positives partition the data set's positives.
  roles = [split.train, split.valid, split.tests["cold"], split.tests["warm"], split.extra_valid["valid_warm"]]
  keys = [_keys(r, n) for r in roles]
  assert sum(len(k) for k in keys) == len(data.interactions) == len(set().union(*keys))
  # Warm interactions (positive or not) split 8:1:1 per interaction; seen = the training part of them.
  n_warm = int(np.isin(every.item, warm).sum())
  assert len(split.seen) == n_warm - 2 * round(0.1 * n_warm)
  assert _keys(split.train, n) <= _keys(split.seen, n)
  assert not _keys(split.seen, n) & (_keys(split.tests["warm"], n) | _keys(split.extra_valid["valid_warm"], n))
  # Seeded.
  again = make_split(data, "cold_items_ranking", 3, cold_item_share=0.2)
  assert np.array_equal(again.catalogues["cold"], ct) and np.array_equal(again.train.item, split.train.item)
  other = make_split(data, "cold_items_ranking", 4, cold_item_share=0.2)
  assert not np.array_equal(other.catalogues["cold"], ct)
  with pytest.raises(ValueError, match="data.cold_item_share"):
    make_split(data, "cold_items_ranking", 0, cold_item_share=1.5)


@pytest.mark.parametrize("sampler", ["matrix", "sorted"])
def test_no_cold_item_in_training(implicit_data, prep_matrix, sampler):
  prep = prep_matrix if sampler == "matrix" else prepare(ranking_config(sampler), 1, implicit_data)
  split = prep.split
  cold = np.concatenate([split.catalogues["valid"], split.catalogues["cold"]])
  # Meta-training tasks.
  t = prep.train
  used = np.asarray(t.items)[np.asarray(t.mask)]
  assert not np.isin(used, cold).any()
  # Derived features: id vocabulary, item statistics, popularity counts, rating stats.
  f = prep.features.item
  assert (np.asarray(f["item_id"])[cold] == 0).all()
  assert (np.asarray(f["item_stats"])[cold] == 0).all()
  assert (popularity(split.train, prep.data.num_items)[cold] == 0).all()
  # The training sampler: no cold item seen, none drawable.
  extra = prep.features.extra
  if sampler == "matrix":
    assert not np.asarray(extra[neg.SEEN])[:, cold].any()
    assert np.isneginf(np.asarray(extra[neg.TRAIN_LOGITS])[cold]).all()
  else:
    sp = neg.sorted_from_extra(extra)
    n_pool = int(np.searchsorted(np.asarray(sp.pool), prep.data.num_items))  # pool padded past its items
    pool = np.asarray(sp.pool)[:len(np.unique(split.train.item))]
    assert not np.isin(pool, cold).any() and n_pool >= len(pool)
  # Evaluation supports (positives and their negatives) hold training items only.
  for b in list(prep.valid_batches.values()) + list(prep.test_batches.values()):
    sup = np.asarray(b.support_items)[np.asarray(b.support_mask)]
    assert len(sup) and not np.isin(sup, cold).any()
    assert set(sup.tolist()) <= set(np.unique(split.train.item).tolist())


def test_catalogues_relevance_and_exclusions(prep_matrix):
  prep = prep_matrix
  split, n = prep.split, prep.data.num_items
  cold = prep.test_batches["cold"]
  assert (np.asarray(cold.query_items) == split.catalogues["cold"][None, :]).all()
  assert set(np.asarray(cold.user).tolist()) == set(np.unique(split.tests["cold"].user).tolist())
  labels = np.asarray(cold.query_ratings)
  rows, cols = np.nonzero(labels)
  got = set((np.asarray(cold.user)[rows].astype(np.int64) * n + split.catalogues["cold"][cols]).tolist())
  assert got == _keys(split.tests["cold"], n) and np.asarray(cold.query_mask).all()
  # Warm: every warm item except the user's training interactions; the held-out ones are relevant.
  warm = prep.test_batches["warm"]
  u, items, mask = np.asarray(warm.user), np.asarray(warm.query_items), np.asarray(warm.query_mask)
  excluded = set((u[:, None].astype(np.int64) * n + items)[~mask].tolist())
  seen = _keys(split.seen, n)
  assert excluded == {k for k in seen if k // n in set(u.tolist())}
  assert not (np.asarray(warm.query_ratings) > 0)[~mask].any()
  assert prep.selection == {"cold": "valid", "warm": "valid"}
  assert prep.layouts["cold"].mode == "full"


def test_config_errors_name_the_key(implicit_data):
  c = ranking_config()
  c.eval.candidates = "sampled"
  with pytest.raises(cfg_lib.ConfigError, match="eval.candidates=all"):
    prepare(c, 0, implicit_data)
  c = ranking_config()
  c.eval.metrics = ("hr@3",)
  with pytest.raises(cfg_lib.ConfigError, match="eval.metrics"):
    prepare(c, 0, implicit_data)
  c = make_implicit(tiny_config(), metrics=("recall@5",))  # another protocol: refused before any negative is drawn
  with pytest.raises(cfg_lib.ConfigError, match="cold_items_ranking"):
    _refuse_full_ranking_metrics(c)


def test_run_scores_recall_for_the_cold_scenario():
  from metarec_jax import run
  c = ranking_config(methods=("popularity",))
  c.eval.scenarios = ("cold",)
  c.eval.metrics = ("recall@20", "ndcg@20", "recall@3", "auc")
  out = run(c, progress=False, verbose=False)
  (row,) = out["rows"]
  assert (row["method"], row["scenario"]) == ("popularity", "cold") and row["tasks"] > 0
  assert row["recall@20"] == pytest.approx(1.0)  # 20 >= the tiny cold-test catalogue: every item is in the top 20
  # Popularity knows no cold item: every score ties, a random ranking (AUC 1/2, recall@3 = 3 / catalogue size).
  assert row["auc"] == pytest.approx(0.5)
  assert row["recall@3"] == pytest.approx(3 / len(make_split(
      to_implicit(make_synthetic(SyntheticSpec(**TINY_SYNTHETIC)), 4.0), "cold_items_ranking", 0).catalogues["cold"]))


def test_an_adapted_model_scores_the_whole_catalogue(prep_matrix):
  """A model's scores of the whole cold-test catalogue, adapted on each user's training positives (+ negatives).

  One inner step of MAML on the embeddings-free head (``meta.local_tables=false``) keeps the compile short.
  """
  import jax
  from metarec_jax.eval.evaluate import make_adapted_predictor, predict_in_chunks, score_set
  from metarec_jax.meta.learners import init_meta_params
  from metarec_jax.methods.learned import default_parts
  c, prep = ranking_config(), prep_matrix
  c.meta.local_tables, c.meta.adapt = False, "head"
  parts = default_parts(c, prep)
  params = init_meta_params(parts.spec, parts.init(prep.features, jax.random.PRNGKey(0)))
  predictor = make_adapted_predictor(parts.spec, parts.predict)
  batch = prep.test_batches["cold"]
  pred = predict_in_chunks(lambda b: predictor(params, prep.features, b, 0.1), batch, 256)
  assert pred.shape == np.shape(batch.query_items)
  out = score_set(prep, pred, batch, "cold", c.eval.metrics)
  assert out["tasks"] == batch.num_tasks and 0.0 <= out["recall@3"] <= 1.0 and 0.0 < out["auc"] < 1.0


def test_dropoutnet_is_the_pooled_model_with_ids_and_item_id_dropout():
  from metarec_jax.methods import resolve
  from metarec_jax.methods.pooled import Pooled
  from metarec_jax.methods.presets import DROPOUT_SHARE
  c = ranking_config(methods=("pooled", "dropoutnet"))
  m = resolve("dropoutnet", c)
  mc = m.config
  assert isinstance(m, Pooled) and m.checkpoint == "dropoutnet"  # its own checkpoint, not pooled's
  assert (mc.meta.learner, mc.model.item_id, mc.model.user_id, mc.train.item_cold_share) == (
      "pooled", True, True, DROPOUT_SHARE)
  cfg_lib.validate(c)
