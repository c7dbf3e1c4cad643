"""LWA and NLBA (Vartak et al., 2017): the shared checks, the class representatives, the equations (implicit run: test_successors_implicit)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarec_jax.methods.lwa  # noqa: F401  (registers lwa and nlba before the methods package does)
from metarec_jax import ConfigError, default_config, validate
from metarec_jax.meta.learners import row
from metarec_jax.methods import resolve
from metarec_jax.methods.lwa import class_representatives, positive_labels
from metarec_jax.models.conditioned import apply_conditioned
from metarec_jax.models.extractor import MLP

from tests.methods import conditioned_checks as checks

CASES = {"lwa": checks.case("lwa"), "nlba": checks.case("nlba")}
SHARED = checks.CHECKS


@pytest.mark.parametrize("check", list(SHARED))
@pytest.mark.parametrize("method", list(CASES))
def test_the_shared_checks(method, check):
  SHARED[check](CASES[method]())


def test_the_class_representatives_are_masked_means_per_class():
  f = jnp.asarray([[1., 2.], [3., 4.], [5., 7.], [9., -1.], [100., 100.]])
  positive = jnp.asarray([1., 0., 1., 0., 1.])
  mask = jnp.asarray([1., 1., 1., 1., 0.])  # the last (a positive) is padding
  r0, r1, n0, n1 = class_representatives(f, positive, mask)
  np.testing.assert_allclose(r1, [(1 + 5) / 2, (2 + 7) / 2])
  np.testing.assert_allclose(r0, [(3 + 9) / 2, (4 - 1) / 2])
  assert (float(n0), float(n1)) == (2.0, 2.0)
  # no negative among the valid entries: R_0 is zero and its count 0; R_1 the mean of all valid rows
  r0, r1, n0, n1 = class_representatives(f, jnp.asarray([1., 1., 1., 0., 1.]), jnp.asarray([1., 1., 1., 0., 1.]))
  np.testing.assert_allclose(r0, [0., 0.])
  np.testing.assert_allclose(r1, [(1 + 3 + 5 + 100) / 4, (2 + 4 + 7 + 100) / 4])
  assert float(n0) == 0.0 and float(n1) == 4.0


def test_swapping_every_label_swaps_the_representatives():
  f = jax.random.normal(jax.random.PRNGKey(0), (7, 3))
  labels = jnp.asarray([1., 0., 0., 1., 1., 0., 1.])
  mask = jnp.asarray([1., 1., 1., 1., 1., 1., 0.])
  r0, r1, n0, n1 = class_representatives(f, positive_labels(labels, mask, "label"), mask)
  s0, s1, m0, m1 = class_representatives(f, positive_labels(1 - labels, mask, "label"), mask)
  np.testing.assert_allclose(r0, s1, rtol=1e-6)
  np.testing.assert_allclose(r1, s0, rtol=1e-6)
  assert (float(n0), float(n1)) == (float(m1), float(m0)) == (3.0, 3.0)
  assert float(jnp.max(jnp.abs(r0 - r1))) > 1e-3  # the two classes differ, so the swap is a real change


def test_the_class_rules():
  y = jnp.asarray([5., 4., 3., 2., 1., 5.])
  mask = jnp.asarray([1., 1., 1., 1., 1., 0.])
  np.testing.assert_array_equal(positive_labels(y, mask, "threshold", 4.0)[:5], [1, 1, 0, 0, 0])
  np.testing.assert_array_equal(positive_labels(y, mask, "threshold", 3.0)[:5], [1, 1, 1, 0, 0])
  # the user's mean over the valid entries is 3 (the masked 5 does not count); ties are positive
  np.testing.assert_array_equal(positive_labels(y, mask, "user_mean")[:5], [1, 1, 1, 0, 0])
  np.testing.assert_array_equal(positive_labels(jnp.asarray([1., 0., 1.]), jnp.ones(3), "label"), [1, 0, 1])
  with pytest.raises(ValueError, match="unknown class rule"):
    positive_labels(y, mask, "median")


def _task(c, t=0):
  b = row(c.batch, t)
  return b, (b.support_items, b.support_ratings, b.support_mask)


def _vectors(model, params, features, user, items):
  """``(f_u, F(items))`` by hand: the extractor, then the tower."""
  user_cols = {s.name: features.user[s.name][user] for s in model.user_specs}
  item_cols = {s.name: features.item[s.name][items] for s in model.item_specs}
  f_u, f = model.embed(params, user_cols, item_cols)
  tower = MLP(tuple(model.tower), final_activation=False)
  return f_u, tower.apply({"params": params["tower"]}, f)


def test_lwa_scores_are_equation_2_with_a_learned_default_for_an_empty_class():
  c = CASES["lwa"]()
  model, f = c.parts.model, c.prep.features
  b, _ = _task(c)
  params = jax.tree_util.tree_map(lambda x: x, c.meta["model"])
  d = params["default_rep"].shape[1]
  params["default_rep"] = jax.random.normal(jax.random.PRNGKey(1), (2, d))
  params["b"] = jnp.asarray(0.3)
  # every valid support rating >= 4: class 0 (ratings < 4) is empty and takes its learned default
  support = (b.support_items, jnp.where(b.support_mask, 5.0, 1.0), b.support_mask)
  got, _ = apply_conditioned(model, params, f, b.user, b.query_items, support)
  f_u, f_q = _vectors(model, params, f, b.user, b.query_items)
  _, f_s = _vectors(model, params, f, b.user, b.support_items)
  m = b.support_mask.astype(jnp.float32)[:, None]
  r1 = jnp.sum(f_s * m, 0) / jnp.sum(m)
  r0 = params["default_rep"][0]
  w = r0 @ params["g0"]["kernel"] + r1 @ params["g1"]["kernel"] + f_u @ params["gu"]["kernel"]
  bias = params["b"] + f_u @ params["cu"]["kernel"][:, 0]
  np.testing.assert_allclose(np.asarray(got), np.asarray(model.offset + f_q @ w + bias), rtol=1e-4, atol=1e-5)
  # the default matters: with zeros for empty classes the scores differ
  zeros = model.clone(empty="zeros")
  other, _ = apply_conditioned(zeros, {k: v for k, v in params.items() if k != "default_rep"}, f, b.user,
                               b.query_items, support)
  assert float(jnp.max(jnp.abs(other - got))) > 1e-4


def test_nlba_scores_are_equation_3():
  c = CASES["nlba"]()
  model, f, params = c.parts.model, c.prep.features, c.meta["model"]
  b, support = _task(c, 1)
  got, _ = apply_conditioned(model, params, f, b.user, b.query_items, support)
  f_u, f_q = _vectors(model, params, f, b.user, b.query_items)
  _, f_s = _vectors(model, params, f, b.user, b.support_items)
  pos = (b.support_ratings >= 4.0) & b.support_mask
  neg = (b.support_ratings < 4.0) & b.support_mask
  assert int(pos.sum()) > 0 and int(neg.sum()) > 0, "pick a task with both classes"
  r1 = f_s[np.asarray(pos)].mean(0)
  r0 = f_s[np.asarray(neg)].mean(0)

  def bias(suffix):
    return (r0 @ params[f"v0_{suffix}"]["kernel"] + r1 @ params[f"v1_{suffix}"]["kernel"]
            + f_u @ params[f"u_{suffix}"]["kernel"])

  h = jax.nn.relu(f_q @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"] + bias("0"))
  want = model.offset + h @ params["out"]["kernel"][:, 0] + params["out"]["bias"][0] + bias("out")[0]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def _swap_classes(params):
  """The params with the roles of class 0 and class 1 exchanged."""
  out = dict(params)
  out["default_rep"] = params["default_rep"][::-1]
  for k in params:
    if k.startswith("g0") or k.startswith("v0_"):
      other = k.replace("g0", "g1") if k.startswith("g0") else "v1_" + k[3:]
      out[k], out[other] = params[other], params[k]
  return out


@pytest.mark.parametrize("method", list(CASES))
def test_flipping_every_label_with_swapped_class_params_gives_the_same_scores(method):
  c = CASES[method]()
  model = c.parts.model.clone(rule="label")  # implicit feedback's 0/1 labels
  f = c.prep.features
  b, _ = _task(c, 2)
  params = dict(c.meta["model"])
  params["default_rep"] = jax.random.normal(jax.random.PRNGKey(2), params["default_rep"].shape)
  labels = (jnp.arange(b.support_items.shape[0]) % 3 == 0).astype(jnp.float32)
  sup = (b.support_items, labels, b.support_mask)
  flipped = (b.support_items, 1.0 - labels, b.support_mask)
  a, _ = apply_conditioned(model, params, f, b.user, b.query_items, sup)
  swapped, _ = apply_conditioned(model, _swap_classes(params), f, b.user, b.query_items, flipped)
  np.testing.assert_allclose(np.asarray(a), np.asarray(swapped), rtol=1e-5, atol=1e-5)
  other, _ = apply_conditioned(model, params, f, b.user, b.query_items, flipped)
  assert float(jnp.max(jnp.abs(other - a))) > 1e-5  # flipping the labels alone changes the scores
  # one-class support (every label 1): class 0 takes its default, and the swap still holds
  ones = (b.support_items, jnp.ones_like(labels), b.support_mask)
  zeros = (b.support_items, jnp.zeros_like(labels), b.support_mask)
  a, _ = apply_conditioned(model, params, f, b.user, b.query_items, ones)
  swapped, _ = apply_conditioned(model, _swap_classes(params), f, b.user, b.query_items, zeros)
  np.testing.assert_allclose(np.asarray(a), np.asarray(swapped), rtol=1e-5, atol=1e-5)


def test_the_blocks_are_read_by_their_methods_and_checked():
  c = default_config()
  assert c.lwa.rule == "threshold" and tuple(c.nlba.hidden) == (36,)
  c.methods = ("lwa", "nlba", "maml")
  lwa, nlba, maml = (resolve(n, c) for n in c.methods)
  assert lwa.reads_key("lwa.rule") and nlba.reads_key("lwa.rule") and not maml.reads_key("lwa.rule")
  assert nlba.reads_key("nlba.hidden") and not lwa.reads_key("nlba.hidden")
  assert lwa.config.meta.inner_steps == 0 and not lwa.reads_key("meta.inner_lr")
  c.lwa.rule = "median"
  c.nlba.hidden = (0,)
  with pytest.raises(ConfigError, match=r"lwa.rule='median'[\s\S]*nlba.hidden=\(0,\)"):
    validate(c)


def test_the_user_mean_rule_reaches_the_scores():
  c = CASES["lwa"]()
  b, _ = _task(c, 3)
  model, params = c.parts.model, c.meta["model"]
  # ratings 1 and 2 (mean 1.5): all negatives under the threshold rule, the 2s positive under user_mean
  ratings = jnp.where(jnp.arange(b.support_items.shape[0]) % 2 == 0, 1.0, 2.0)
  support = (b.support_items, ratings, b.support_mask)
  a, _ = apply_conditioned(model, params, c.prep.features, b.user, b.query_items, support)
  u, _ = apply_conditioned(model.clone(rule="user_mean"), params, c.prep.features, b.user, b.query_items, support)
  assert float(jnp.max(jnp.abs(a - u))) > 1e-6


def test_the_support_bias_adds_beta_times_the_centred_mean_support_rating():
  c = CASES["nlba"]()
  b, support = _task(c, 4)
  model, params = c.parts.model, c.meta["model"]
  base, _ = apply_conditioned(model, params, c.prep.features, b.user, b.query_items, support)
  biased = model.clone(support_bias=True)
  got, _ = apply_conditioned(biased, {**params, "beta": jnp.asarray(0.5)}, c.prep.features, b.user, b.query_items,
                             support)
  m = b.support_mask
  want = 0.5 * (float(b.support_ratings[np.asarray(m)].mean()) - model.offset)
  assert abs(want) > 1e-3
  np.testing.assert_allclose(np.asarray(got - base), want, rtol=1e-4, atol=1e-5)
  empty, _ = apply_conditioned(biased, {**params, "beta": jnp.asarray(0.5)}, c.prep.features, b.user,
                               b.query_items, None)
  prior, _ = apply_conditioned(model, params, c.prep.features, b.user, b.query_items, None)
  np.testing.assert_allclose(np.asarray(empty), np.asarray(prior), atol=1e-6)  # no support: no bias


