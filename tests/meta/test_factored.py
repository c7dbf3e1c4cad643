"""The factored inner loop computes what the plain one computes (float64), and applies only where it can."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.methods import spec_of
from metarec_jax.meta import inner
from metarec_jax.meta.factored import factored_applies, factored_pays
from metarec_jax.meta.learners import adapt_on_support, init_meta_params, learner_spec, meta_gradient, row
from metarec_jax.models.fast_weights import FAST_DELTA
from metarec_jax.models.model import Predict, RecModel, init_params, make_predict
from tests.conftest import tiny_config, tree_allclose, x64


def _f64(tree):
  return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _with_padding(batch):
  """The batch with its last two support rows masked out (padded tasks)."""
  mask = batch.support_mask.at[:, -2:].set(False)
  return dataclasses.replace(batch, support_mask=mask)


def _model_setup(kind, tiny_setup, tiny_data):
  """(predict, params, features, batch): the plain MLP model, or one with residual + support vector + ridge."""
  model, predict, params, features, _, batch = tiny_setup
  if kind == "residual_support_ridge":  # the user vector is one per scored item under leave-one-out
    model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5, 4),
                     support_vector=True, ridge_dim=2)
    n_items = next(iter(features.item.values())).shape[0]
    means = jnp.asarray(np.random.default_rng(0).uniform(2.5, 4.5, n_items), jnp.float32)
    features = dataclasses.replace(features, item={**features.item, ITEM_MEAN: means})
    params = init_params(model, features, jax.random.PRNGKey(3))
    predict = make_predict(model, residual=True)
  return predict, params, features, _with_padding(batch)


@pytest.mark.parametrize("kind,learner,steps,remat,chunk", [
    ("plain", "melu", 1, False, 0),
    ("plain", "melu", 3, True, 2),
    ("residual_support_ridge", "melu", 2, False, 0),
    ("plain", "fomaml", 2, False, 0),
])
def test_factored_meta_gradient_equals_plain(tiny_setup, tiny_data, kind, learner, steps, remat, chunk):
  predict, params, features, batch = _model_setup(kind, tiny_setup, tiny_data)
  factored = learner_spec(learner, inner_lr=0.5, inner_steps=steps, adapt="head", remat=remat, factored="on")
  plain = factored.with_schedule(factored="off")
  with x64():
    meta, feats, tasks = _f64((init_meta_params(factored, params), features, batch))
    a = jax.jit(lambda m: meta_gradient(factored, predict, m, feats, tasks, chunk))(meta)
    b = jax.jit(lambda m: meta_gradient(plain, predict, m, feats, tasks, chunk))(meta)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-10)
    assert tree_allclose(a[1], b[1], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(a[2]["support_loss"], b[2]["support_loss"], rtol=1e-10)
    head_grads = inner.flatten(a[1]["model"]["head"])
    assert all(float(jnp.abs(g).max()) > 0 for g in head_grads.values())


def test_adapted_params_hold_factors_and_score_like_the_adapted_kernels(tiny_setup, tiny_data):
  predict, params, features, batch = _model_setup("residual_support_ridge", tiny_setup, tiny_data)
  factored = learner_spec("melu", inner_lr=0.5, inner_steps=2, factored="on")
  plain = factored.with_schedule(factored="off")
  meta = init_meta_params(factored, params)
  task = row(batch, 0)

  def scores(spec):
    a = adapt_on_support(spec, predict, meta, features, task.user, task.support_items, task.support_ratings,
                         task.support_mask, task.query_items)
    return a.params, predict(a.params, a.features, a.user, a.query_items, a.support), a.support_losses

  fp, fs, fl = jax.jit(lambda: scores(factored))()
  pp, ps, pl = jax.jit(lambda: scores(plain))()
  np.testing.assert_allclose(fs, ps, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fl, pl, rtol=1e-5)
  flat, plain_flat = inner.flatten(fp), inner.flatten(pp)
  assert fp["head"]["dense_0"][FAST_DELTA].shape == (2, task.support_items.shape[0], 5)  # [steps, S, width]
  np.testing.assert_array_equal(flat["head/dense_0/kernel"], inner.flatten(params)["head/dense_0/kernel"])
  assert not any(FAST_DELTA in k for k in plain_flat)
  assert float(jnp.abs(plain_flat["head/dense_0/kernel"] - flat["head/dense_0/kernel"]).max()) > 0


def test_factored_applies_only_to_dense_layers_with_one_rate(tiny_setup, tiny_data):
  _, predict, params, _, _, _ = tiny_setup
  head, _ = inner.partition(params, "head")
  everything, _ = inner.partition(params, "all")
  assert factored_applies(predict, head, 0.1)
  assert not factored_applies(predict, everything, 0.1)  # embedding tables do not factor
  assert not factored_applies(predict, head, {k: jnp.ones_like(v) for k, v in head.items()})  # Meta-SGD
  relation = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head="relation")
  assert not factored_applies(make_predict(relation), head, 0.1)
  assert not factored_applies(Predict(lambda *a, **k: None), head, 0.1)  # a predict that lists no layers


def test_auto_factors_where_it_needs_fewer_flops(tiny_setup):
  melu = {"head/dense_0/kernel": jnp.zeros((256, 64)), "head/dense_0/bias": jnp.zeros(64),
          "head/dense_1/kernel": jnp.zeros((64, 64)), "head/out/kernel": jnp.zeros((64, 1))}
  assert factored_pays(melu, steps=1, support=20, query=10)
  assert factored_pays(melu, steps=1, support=100, query=10)  # one step: the support size does not count
  assert factored_pays(melu, steps=2, support=20, query=10)
  assert not factored_pays(melu, steps=5, support=20, query=10)  # each step reads every earlier step's factors
  assert not factored_pays(melu, steps=1, support=20, query=1000)
  assert not factored_pays({"head/out/bias": jnp.zeros(1)}, steps=1, support=20, query=10)  # nothing to factor
  # The tiny test model's layers are narrower than its sets: "auto" keeps per-task kernels there, "on" factors.
  _, predict, params, features, _, batch = tiny_setup
  task = row(batch, 0)
  for mode, factored in (("auto", False), ("on", True), ("off", False)):
    spec = learner_spec("melu", inner_lr=0.5, inner_steps=1, factored=mode)
    a = adapt_on_support(spec, predict, init_meta_params(spec, params), features, task.user, task.support_items,
                         task.support_ratings, task.support_mask, task.query_items)
    assert (FAST_DELTA in a.params["head"]["out"]) == factored, mode


def test_meta_factored_setting_reaches_the_learner():
  c = tiny_config()
  assert spec_of(c).schedule.factored == "auto"
  for mode in ("off", "on"):
    c.meta.factored = mode
    assert spec_of(c).schedule.factored == mode
  assert learner_spec("melu", inner_lr=0.1, inner_steps=1, factored=False).schedule.factored == "off"
  c.meta.factored = "sometimes"
  with pytest.raises(ValueError, match="meta.factored must be one of"):
    spec_of(c)


def test_bfloat16_compute_runs_factored(tiny_setup):
  model, predict, params, features, _, batch = tiny_setup
  predict16 = make_predict(model.clone(dtype=jnp.bfloat16))
  factored = learner_spec("melu", inner_lr=0.5, inner_steps=2, factored="on")
  plain = factored.with_schedule(factored="off")
  meta = init_meta_params(factored, params)
  a = jax.jit(lambda m: meta_gradient(factored, predict16, m, features, batch))(meta)
  b = jax.jit(lambda m: meta_gradient(plain, predict16, m, features, batch))(meta)
  assert all(x.dtype == jnp.float32 and bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(a[1]))
  np.testing.assert_allclose(a[0], b[0], rtol=0.02)


def test_a_layer_called_twice_is_refused():
  from metarec_jax.meta.factored import _layer_inputs
  with pytest.raises(ValueError, match="ran 2 times.*meta.factored=false"):
    _layer_inputs({"head": {"out": {"fast_in": (jnp.ones(2), jnp.ones(2))}}}, "head/out")
