"""The serving API: load a finished run, adapt to a new user, rank every item."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from metarec_jax import experiment
from metarec_jax.cli import main
from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.data.tasks import Features, TaskBatch
from metarec_jax.eval.evaluate import make_adapted_predictor
from metarec_jax.meta.learners import init_meta_params, learner_spec
from metarec_jax.models.model import RecModel, init_params
from metarec_jax.serving import Recommender, bucket_length
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  c = tiny_config()
  c.methods = ("global_mean", "anil", "pooled_finetune")
  wd = tmp_path_factory.mktemp("serving") / "wd"
  experiment.run(c, wd, progress=False, verbose=False)
  return wd


@pytest.fixture(scope="module")
def rec(tiny_run):
  return Recommender.load(tiny_run)


def engine_predictions(rec: Recommender, user: int, items, ratings, query) -> np.ndarray:
  """The engine's adapted predictions (as evaluation computes them) for one task."""
  s = len(items)
  batch = TaskBatch(user=jnp.asarray([user], jnp.int32), support_items=jnp.asarray([items], jnp.int32),
                    support_ratings=jnp.asarray([ratings], jnp.float32), support_mask=jnp.ones((1, s), bool),
                    query_items=jnp.asarray([query], jnp.int32),
                    query_ratings=jnp.zeros((1, len(query)), jnp.float32),
                    query_mask=jnp.ones((1, len(query)), bool))
  predictor = make_adapted_predictor(rec.spec, rec.predict)
  return np.asarray(predictor(rec.meta, rec.features, batch, rec.inner_lr))[0]


def check_against_engine(rec: Recommender, user: int = 3):
  items, ratings = [5, 17, 2, 40, 33, 9], [5.0, 1.0, 4.0, 2.0, 3.0, 5.0]
  scorer = rec.adapt(items, ratings, user_id=user)
  scores = scorer.scores()
  assert scores.shape == (rec.num_items,)
  query = np.arange(rec.num_items)
  np.testing.assert_allclose(scores, engine_predictions(rec, user, items, ratings, query), rtol=1e-5, atol=1e-5)
  # Adaptation changed something: the scores differ from those of the unadapted model.
  unadapted = rec.adapt([], [], user_id=user).scores()
  assert np.abs(scores - unadapted).max() > 1e-6
  return scorer, scores


def test_load_picks_the_first_learned_method_and_the_best_params(tiny_run, rec):
  assert rec.name == "anil" and rec.spec.adapt == "head"
  assert rec.caches_items  # the item tower does not adapt: item features computed once
  with ocp.CheckpointManager((tiny_run / "checkpoints" / "anil__seed0").absolute()) as mgr:
    best = mgr.restore(mgr.latest_step())["best"]
  leaves = jax.tree_util.tree_leaves
  assert all(np.array_equal(a, b) for a, b in zip(leaves(best), leaves(rec.meta)))


def test_scores_equal_the_engine_adapted_predictions(rec):
  check_against_engine(rec)


def test_top_k_ranks_all_items_and_excludes_the_support_set(rec):
  scorer, scores = check_against_engine(rec)
  seen = {5, 17, 2, 40, 33, 9}
  everything, vals = scorer.top_k(rec.num_items, exclude_seen=False)
  assert sorted(everything.tolist()) == list(range(rec.num_items))
  np.testing.assert_allclose(vals, scores[everything], rtol=1e-6)
  assert np.all(np.diff(vals) <= 0)
  ids, vals = scorer.top_k(10)
  assert len(ids) == 10 and not seen & set(ids.tolist())
  unseen = np.array([i for i in np.argsort(-scores, kind="stable") if i not in seen])
  np.testing.assert_allclose(vals, scores[unseen[:10]], rtol=1e-6)
  assert len(scorer.top_k(rec.num_items - len(seen))[0]) == rec.num_items - len(seen)
  with pytest.raises(ValueError, match="k must lie"):
    scorer.top_k(rec.num_items - len(seen) + 1)


def test_new_users_in_one_bucket_do_not_recompile(rec):
  rec.adapt([1, 2, 3], [4, 5, 1]).top_k(5)
  adapt_compiles, rank_compiles = rec._adapt._cache_size(), rec._top_k._cache_size()
  rec.adapt(list(range(20, 40)), [3.0] * 20, user_features={rec.user_fields[0].name: 1}).top_k(5)
  rec.adapt([7], [2.0], user_id=1).top_k(5, exclude_seen=False)
  assert rec._adapt._cache_size() == adapt_compiles and rec._top_k._cache_size() == rank_compiles
  assert bucket_length(0) == bucket_length(32) == 32 and bucket_length(33) == 64


def test_new_user_features_and_bad_input(rec):
  field = rec.user_fields[0].name
  row = rec.user_row(user_id=4, user_features={field: 2})
  assert int(row[field]) == 2
  assert all(int(v) == 0 for v in rec.user_row().values())  # a new user's fields are unknown
  with pytest.raises(KeyError, match="unknown user field"):
    rec.user_row(user_features={"nope": 1})
  with pytest.raises(ValueError, match="item ids must lie"):
    rec.adapt([rec.num_items], [3.0])
  with pytest.raises(ValueError, match="2 item ids but 1 ratings"):
    rec.adapt([1, 2], [3.0])


def test_load_refuses_baselines_and_missing_runs(tiny_run, tmp_path):
  with pytest.raises(ValueError, match="not a learned method"):
    Recommender.load(tiny_run, method="global_mean")
  with pytest.raises(FileNotFoundError, match="not a metarec workdir"):
    Recommender.load(tmp_path)


@pytest.mark.parametrize("head,learner,extractor", [("mlp", "maml", "fields"), ("relation", "metasgd", "fields"),
                                                    ("relation", "anil", "fields"), ("mlp", "anil", "transformer")])
def test_adapting_the_item_tower_and_other_heads_match_the_engine(tiny_setup, tiny_data, head, learner, extractor):
  # Serving builds the extractor and the head through the model registry, as training does (a field
  # transformer run once failed to load: serving built a fields extractor whatever model.extractor said).
  from metarec_jax.models.field_transformer import TransformerSpec
  _, _, _, features, _, _ = tiny_setup
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head=head, head_hidden=(5,),
                   offset=3.5, extractor=extractor, transformer=TransformerSpec.named("tiny"))
  spec = learner_spec(learner, inner_lr=0.1, inner_steps=2)  # maml, metasgd: the item tower adapts too
  meta = init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(0)))
  rec = Recommender(model, spec, meta, features)
  assert rec.caches_items == (learner == "anil")
  check_against_engine(rec)


@pytest.mark.parametrize("extra", [dict(support_vector=True), dict(ridge_dim=3)])
def test_residual_support_vector_models_score_with_the_support_set(tiny_setup, tiny_data, extra):
  _, _, _, features, _, _ = tiny_setup
  n = tiny_data.num_items
  features = Features(user=features.user, item={**features.item, ITEM_MEAN: jnp.linspace(2.5, 4.5, n)})
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5,), **extra)
  spec = learner_spec("anil", inner_lr=0.1, inner_steps=1)
  meta = init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(1)))
  rec = Recommender(model, spec, meta, features, residual=True)
  assert not rec.caches_items  # the user side depends on the support set: the engine's predict
  check_against_engine(rec)


def test_load_pooled_finetune_uses_the_tuned_steps_and_rate(tiny_run):
  rec = Recommender.load(tiny_run, method="pooled_finetune")
  part = json.loads((tiny_run / "parts" / "pooled_finetune__seed0.json").read_text())
  sel = part["selection"]["valid"]
  assert rec.inner_lr == sel["tuned"]["inner_lr"] and rec.spec.inner_steps == sel["tuned"]["inner_steps"] == 1
  assert rec.spec.adapt == "all" and not rec.caches_items
  check_against_engine(rec)


def test_bench_serving_command_on_a_run(tiny_run, tmp_path, capsys):
  out = tmp_path / "serving.json"
  assert main(["bench", "serving", "--workdir", str(tiny_run), "--calls", "5", "--support-max", "8",
               "--json", str(out)]) == 0
  result = json.loads(out.read_text())
  assert result["items"] > 0 and result["calls"] == 5 and result["method"] == "anil"
  assert result["adapt_rank_ms"]["p50"] <= result["adapt_rank_ms"]["p99"]
  assert "p50" in capsys.readouterr().out
