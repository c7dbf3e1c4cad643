"""CMML and ColdNAS: the shared conditioned checks, the modulation functions, the search (implicit run: test_successors_implicit)."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarec_jax.methods.modulation as mod  # registers cmml, coldnas, coldnas_search
from metarec_jax import ConfigError, validate
from metarec_jax.methods import resolve
from metarec_jax.models.conditioned import apply_conditioned, init_conditioned
from tests.conftest import tiny_config
from tests.methods import conditioned_checks as checks


def small(c):
  """Narrow layers: the checks test the wiring, not the capacity."""
  c.cmml.hidden = (8, 8)
  c.cmml.encoder_hidden = 8
  c.cmml.hyper_hidden = 16
  c.coldnas.hidden = (16, 8, 8)
  c.coldnas.context_dim = 16


CMML_CASE = checks.case("cmml", small)
COLDNAS_CASE = checks.case("coldnas", small)
CASES = {"cmml": CMML_CASE, "coldnas": COLDNAS_CASE}
NAMES = sorted(CASES)

# --------------------------------------------------------------------------- the shared checks, per method


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_finite_and_shaped(name):
  checks.scores_are_finite_and_shaped(CASES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_vmapped_equals_the_per_task_loop(name):
  checks.vmapped_equals_loop(CASES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_padding_changes_nothing(name):
  checks.padding_changes_nothing(CASES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_empty_support_gives_the_prior(name):
  checks.empty_support_gives_the_prior(CASES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_loo_equals_scoring_without_the_item(name):
  checks.loo_equals_scoring_without_the_item(CASES[name]())


@pytest.mark.parametrize("name", NAMES)
def test_training_lowers_the_query_loss(name):
  # ColdNAS's four-position predictor sits on a plateau for its first ~40 steps on the tiny data (query
  # loss 1.080 -> 1.095 after 40 steps, 1.052 after 120, 0.997 after 160 at the check's rate 3e-3).
  checks.training_lowers_the_query_loss(CASES[name](), steps=160 if name == "coldnas" else 40)


# --------------------------------------------------------------------------- the modulation functions


def test_film_with_unit_scale_and_zero_shift_is_the_plain_mlp():
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 7))
  film_mlp = mod.ModulatedMLP((6, 4), kind="film")
  mods = [(jnp.ones((6,)), jnp.zeros((6,))), (jnp.ones((4,)), jnp.zeros((4,)))]
  params = film_mlp.init(jax.random.PRNGKey(1), x, mods)["params"]
  modulated = film_mlp.apply({"params": params}, x, mods)
  plain = mod.ModulatedMLP((6, 4), kind="none").apply({"params": params}, x)
  np.testing.assert_allclose(np.asarray(modulated), np.asarray(plain), rtol=1e-6)
  # ... and both are the MLP written out: leaky_relu(x W1 + b1) -> leaky_relu(. W2 + b2) -> . w + b
  h = np.asarray(x)
  for layer in ("dense_0", "dense_1"):
    z = h @ np.asarray(params[layer]["kernel"]) + np.asarray(params[layer]["bias"])
    h = np.where(z >= 0, z, 0.01 * z)
  by_hand = (h @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"]))[:, 0]
  np.testing.assert_allclose(np.asarray(plain), by_hand, rtol=1e-5, atol=1e-6)
  # another scale changes the scores
  other = [(2.0 * jnp.ones((6,)), jnp.zeros((6,))), mods[1]]
  assert float(jnp.max(jnp.abs(film_mlp.apply({"params": params}, x, other) - modulated))) > 1e-4


def test_film_is_scale_times_h_plus_shift():
  h, g, b = jnp.array([1.0, -2.0, 3.0]), jnp.array([2.0, 0.5, -1.0]), jnp.array([0.0, 1.0, -3.0])
  np.testing.assert_allclose(np.asarray(mod.film(h, g, b)), [2.0, 0.0, -6.0])


H = jnp.array([-2.0, -0.5, 0.0, 1.0, 3.0])
P = jnp.array([1.0, -1.0, 0.5, 2.0, 0.0])


@pytest.mark.parametrize("op,expected", [
    ("max", [1.0, -0.5, 0.5, 2.0, 3.0]),
    ("min", [-2.0, -1.0, 0.0, 1.0, 0.0]),
    ("mul", [-2.0, 0.5, 0.0, 2.0, 0.0]),
    ("add", [-1.0, -1.5, 0.5, 3.0, 3.0]),
])
def test_each_coldnas_operator_computes_what_it_says(op, expected):
  np.testing.assert_allclose(np.asarray(mod.apply_op(op, H, P)), expected)
  np.testing.assert_allclose(np.asarray(mod.modulate_ops(H, {op: P}, (op,))), expected)


def test_operators_apply_in_the_transformed_spaces_order_whatever_the_order_given():
  params = {"max": jnp.full((5,), -1.0), "min": jnp.full((5,), 2.0), "mul": jnp.full((5,), 3.0),
            "add": jnp.full((5,), 0.5)}
  expected = np.minimum(np.maximum(np.asarray(H), -1.0), 2.0) * 3.0 + 0.5  # min(max(h, a), b) * c + d
  for ops in (mod.OPS, tuple(reversed(mod.OPS))):
    np.testing.assert_allclose(np.asarray(mod.modulate_ops(H, params, ops)), expected, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(mod.modulate_ops(H, params, ())), np.asarray(H))
  with pytest.raises(ValueError, match="unknown ColdNAS operator"):
    mod.apply_op("div", H, P)


def test_the_relaxed_mixture_with_one_hot_gates_is_the_fixed_operator():
  keys = jax.random.split(jax.random.PRNGKey(2), 5)
  h = jax.random.normal(keys[0], (3, 6))
  params = {op: jax.random.normal(k, (6,)) for op, k in zip(mod.OPS, keys[1:])}
  for k, op in enumerate(mod.OPS):
    one_hot = jnp.zeros((4,)).at[k].set(1.0)
    np.testing.assert_allclose(np.asarray(mod.modulate_relaxed(h, params, one_hot)),
                               np.asarray(mod.modulate_ops(h, params, (op,))), rtol=1e-6, atol=1e-6)
  subset = jnp.array([1.0, 0.0, 1.0, 1.0])  # max, mul, add
  np.testing.assert_allclose(np.asarray(mod.modulate_relaxed(h, params, subset)),
                             np.asarray(mod.modulate_ops(h, params, ("max", "mul", "add"))), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(np.asarray(mod.modulate_relaxed(h, params, jnp.zeros((4,)))), np.asarray(h))
  half = mod.modulate_relaxed(h, params, jnp.full((4,), 0.5))  # a true mixture is neither
  assert float(jnp.max(jnp.abs(half - mod.modulate_ops(h, params, mod.OPS)))) > 1e-3


def test_the_supernet_with_saturated_gates_scores_as_the_fixed_architecture():
  c = COLDNAS_CASE()
  method = resolve("coldnas", c.config)
  b = jax.tree_util.tree_map(lambda x: x[0], c.batch)
  support = (b.support_items, b.support_ratings, b.support_mask)
  ops = (("add",), ("mul",), ("max", "add"), ())
  fixed = method.make_model(c.prep, ops=ops)
  supernet = method.make_model(c.prep, search=True)
  params = init_conditioned(supernet, c.prep.features, jax.random.PRNGKey(4))
  assert params["predictor"]["alpha"].shape == (4, 4)
  gates = np.array([[op in o for op in mod.OPS] for o in ops], np.float32)

  def scores(model, p):
    return apply_conditioned(model, p, c.prep.features, b.user, b.query_items, support)[0]

  def with_alpha(alpha):
    return {**params, "predictor": {**params["predictor"], "alpha": alpha}}

  saturated = with_alpha(jnp.asarray(np.where(gates > 0, 100.0, -100.0)))  # sigmoid: 1 and 0
  fixed_params = {**params, "predictor": {k: v for k, v in params["predictor"].items() if k != "alpha"}}
  s_super = jax.jit(lambda p: scores(supernet, p))(saturated)
  s_fixed = jax.jit(lambda p: scores(fixed, p))(fixed_params)
  np.testing.assert_allclose(np.asarray(s_super), np.asarray(s_fixed), rtol=1e-5, atol=1e-5)
  # the architecture weights get gradients from the scores
  grad = jax.jit(jax.grad(lambda a: jnp.sum(scores(supernet, with_alpha(a)))))(jnp.zeros((4, 4)))
  assert float(jnp.abs(grad).max()) > 0


def test_discretise_keeps_the_top_k_gates_over_all_positions():
  alpha = np.array([[0.1, -1.0, 0.0, 2.0],    # input: add
                    [-3.0, -3.0, -3.0, -3.0],  # hidden 1: nothing
                    [1.5, 0.0, 0.2, 1.0],      # hidden 2: max, add
                    [0.0, 0.0, 0.5, 0.0]])    # hidden 3: mul
  assert mod.discretise(alpha, 4) == (("add",), (), ("max", "add"), ("mul",))
  assert mod.discretise(alpha, 1) == (("add",), (), (), ())
  assert mod.format_ops(mod.discretise(alpha, 3)) == ["add", "none", "max+add", "none"]


def test_ops_parse_to_the_canonical_order_and_bad_ones_are_refused():
  assert mod.parse_ops(("add+max", "none", "", "mul")) == (("max", "add"), (), (), ("mul",))
  with pytest.raises(ValueError, match="unknown ColdNAS operator"):
    mod.parse_ops(("add", "times"))
  c = tiny_config()
  c.methods = ("coldnas",)
  c.coldnas_fixed.ops = ("add", "add")
  with pytest.raises(ConfigError, match="names 2 positions; the predictor has 4"):
    validate(c)
  c.coldnas_fixed.ops = ("none",) * 4
  with pytest.raises(ConfigError, match="modulates nothing"):
    validate(c)
  c.methods = ("coldnas_search",)
  c.coldnas_search.top_k = 17
  with pytest.raises(ConfigError, match="top_k must lie in"):
    validate(c)


def test_the_blocks_are_read_by_their_methods_only():
  c = tiny_config()
  c.methods = ("cmml", "coldnas", "coldnas_search")
  cmml, fixed, search = (resolve(n, c) for n in c.methods)
  assert cmml.reads_key("cmml.hidden") and not fixed.reads_key("cmml.hidden")
  assert fixed.reads_key("coldnas.hidden") and search.reads_key("coldnas.hidden")
  assert fixed.reads_key("coldnas_fixed.ops") and not search.reads_key("coldnas_fixed.ops")
  assert search.reads_key("coldnas_search.top_k") and not fixed.reads_key("coldnas_search.top_k")
  assert all(m.config.meta.inner_steps == 0 and not m.reads_key("model.head_hidden") for m in (cmml, fixed, search))
