"""MAMO: the personalised initial value, the engine's inner loop from it, the memory writes, runs and serving."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metarec_jax.methods.mamo as mamo  # registers mamo before the methods package does
from metarec_jax import ConfigError, default_config, validate
from metarec_jax.data import sample_batch
from metarec_jax.eval.evaluate import make_adapted_predictor
from metarec_jax.meta.inner import partition
from metarec_jax.meta.learners import adapt_on_support, meta_gradient, row, task_loss
from metarec_jax.meta.step import init_state
from metarec_jax.methods import check_overrides_used, resolve

from tests.methods import conditioned_checks as checks

CASE = checks.case("mamo")


def _support(b):
  return b.support_items, b.support_ratings, b.support_mask


def _cols(model, f, user, items=None):
  return mamo._columns(model, f, user, items)


def _plain(c, params):
  """The same model without memory (K = 0) and the params it has."""
  model = c.parts.model.clone(slots=0)
  return model, mamo.make_mamo_predict(model), {k: v for k, v in params.items() if k != "memory"}


@functools.lru_cache(maxsize=None)
def _adapted(spec):
  """Jitted ``(params, features, task, support) -> (adapted query scores, adapted params)`` of the engine."""
  c = CASE()

  def fn(params, f, b, support):
    a = adapt_on_support(spec, c.parts.predict, {"model": params}, f, b.user, *support, b.query_items)
    return c.parts.predict(a.params, a.features, a.user, b.query_items), a.params

  return jax.jit(fn)


def _by_hand(c, params, user):
  """The personalised initial params θ_u = φ_u - τ a^T M_U, W_pref + a^T M_UI, from the memories by hand."""
  model, f = c.parts.model, c.prep.features
  p_u = model.make_extractor(parent=None).apply({"params": params["extractor"]}, _cols(model, f, user)[0],
                                                 method="embed_user")
  mem = params["memory"]
  cos = (mem["profile"] @ p_u) / (jnp.sqrt(jnp.sum(p_u ** 2) + 1e-5) *
                                  jnp.sqrt(jnp.sum(mem["profile"] ** 2, -1) + 1e-5))
  a = jnp.exp(cos) / jnp.sum(jnp.exp(cos))
  tau = c.config.mamo.tau
  out = {k: v for k, v in params.items() if k != "memory"}
  tower = params["user_tower"]
  out["user_tower"] = {f"layer_{i}": {"bias": tower[f"layer_{i}"]["bias"],
                                      "kernel": tower[f"layer_{i}"]["kernel"]
                                      - tau * jnp.einsum("k,kij->ij", a, mem[f"bias_{i}"])}
                       for i in range(len(tower))}
  pref = params["rec"]["pref"]
  out["rec"] = {**params["rec"], "pref": {"kernel": pref["kernel"] + jnp.einsum("k,kij->ij", a, mem["preference"]),
                                          "bias": pref["bias"]}}
  return out, a, p_u


def test_shapes_memory_layout_and_what_adapts():
  c = CASE()
  model, params, f = c.parts.model, c.meta["model"], c.prep.features
  b = row(c.batch, 0)
  out = jax.jit(c.parts.predict)(params, f, b.user, b.query_items, _support(b))
  assert out.shape == b.query_items.shape and bool(jnp.all(jnp.isfinite(out)))
  k, e = c.config.mamo.slots, c.config.model.embed_dim
  mem = params["memory"]
  assert mem["profile"].shape == (k, model.user_dim) and model.user_dim == 4 * e  # 4 user fields
  assert mem["preference"].shape == (k, 2 * e, 2 * e) == (k,) + params["rec"]["pref"]["kernel"].shape
  for i in range(c.config.mamo.n_layer):
    assert mem[f"bias_{i}"].shape == (k,) + params["user_tower"][f"layer_{i}"]["kernel"].shape
  adapted, frozen = partition(params, c.parts.spec.adapt)
  assert {p.split("/")[0] for p in adapted} == {"user_tower", "item_tower", "rec"}
  assert {p.split("/")[0] for p in frozen} == {"extractor", "memory"}
  assert c.parts.spec.first_order and c.parts.spec.task_loss is not None
  # serving's split of the forward pass (embed, then score_features) is the forward pass
  uc, ic = _cols(model, f, b.user, b.query_items)
  split = jax.jit(lambda p, u, i: model.score_features(p, *model.embed(p, u, i)))(params, uc, ic)
  np.testing.assert_allclose(np.asarray(split), np.asarray(out), atol=1e-6)
  assert not model.item_side("user_tower/layer_0/kernel") and model.item_side("item_tower/layer_0/kernel")


def test_tau_zero_and_an_empty_preference_memory_give_the_plain_model():
  c = CASE()
  params, f = c.meta["model"], c.prep.features
  b = row(c.batch, 1)
  _, plain_predict, plain_params = _plain(c, params)
  plain = plain_predict(plain_params, f, b.user, b.query_items)
  zero = {**params, "memory": {**params["memory"], "preference": jnp.zeros_like(params["memory"]["preference"])}}
  off = mamo.make_mamo_predict(c.parts.model.clone(tau=0.0))(zero, f, b.user, b.query_items)
  np.testing.assert_allclose(np.asarray(off), np.asarray(plain), atol=1e-6)
  on = c.parts.predict(params, f, b.user, b.query_items)
  assert float(jnp.max(jnp.abs(on - plain))) > 1e-4  # the memories reach the scores


def test_the_inner_loop_is_sgd_from_the_personalised_initial_value():
  c = CASE()
  params, f = c.meta["model"], c.prep.features
  spec = dataclasses.replace(c.parts.spec, inner_steps=2, inner_lr=0.05)
  b = row(c.batch, 2)
  engine, _ = _adapted(spec)(params, f, b, _support(b))
  # by hand: the plain model from θ_u, two SGD steps of the support loss on the towers and the rec layers
  theta, _, _ = _by_hand(c, params, b.user)
  _, plain_predict, _ = _plain(c, params)
  fixed = {"extractor": theta["extractor"]}
  fast = {k: v for k, v in theta.items() if k != "extractor"}

  def support_loss(fast):
    scores = plain_predict({**fixed, **fast}, f, b.user, b.support_items)
    return spec.loss_fn(scores, b.support_ratings, b.support_mask)

  grad = jax.jit(jax.grad(support_loss))
  for _ in range(2):
    fast = jax.tree_util.tree_map(lambda p, g: p - 0.05 * g, fast, grad(fast))
  by_hand = plain_predict({**fixed, **fast}, f, b.user, b.query_items)
  np.testing.assert_allclose(np.asarray(engine), np.asarray(by_hand), atol=2e-5)
  assert float(jnp.max(jnp.abs(engine - c.parts.predict(params, f, b.user, b.query_items)))) > 1e-3  # it adapted


def test_padding_the_support_changes_nothing():
  c = CASE()
  params, f, spec = c.meta["model"], c.prep.features, c.parts.spec
  b = row(c.batch, 3)

  base, _ = _adapted(spec)(params, f, b, _support(b))
  padded, _ = _adapted(spec)(params, f, b, checks._padded(b, 7, jax.random.PRNGKey(5)))
  np.testing.assert_allclose(np.asarray(base), np.asarray(padded), atol=1e-5)


def _probes(params):
  mem = params["memory"]
  return {"profile": jnp.zeros_like(mem["profile"]), "preference": jnp.zeros_like(mem["preference"])}


def test_vmapped_meta_gradient_equals_the_per_task_loop_and_the_probes_are_the_mean_targets():
  c = CASE()
  spec, predict, f, params = c.parts.spec, c.parts.predict, c.prep.features, c.meta["model"]
  meta = {"model": params, mamo.PROBE: _probes(params)}
  loss, grads, _ = jax.jit(lambda m, b: meta_gradient(spec, predict, m, f, b))(meta, c.batch)
  n = c.batch.num_tasks
  one = jax.jit(jax.value_and_grad(lambda m, t: task_loss(spec, predict, m, f, t)[0]))
  per = [one(meta, row(c.batch, t)) for t in range(n)]
  np.testing.assert_allclose(float(loss), sum(float(l) for l, _ in per) / n, rtol=1e-5)
  loop = jax.tree_util.tree_map(lambda *g: sum(g) / n, *[g for _, g in per])
  for x, y in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(loop)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)
  # the probes change no loss; their gradients are the batch means of the write targets
  plain_loss = jax.jit(lambda m, t: task_loss(spec, predict, m, f, t)[0])
  np.testing.assert_allclose(float(plain_loss({"model": params}, row(c.batch, 0))), float(per[0][0]), rtol=1e-6)
  targets = []
  for t in range(n):
    b = row(c.batch, t)
    _, adapted = _adapted(spec)(params, f, b, _support(b))
    targets.append(mamo.write_targets_of_task(c.parts.model, {"model": params}, f, b.user, adapted))
  for k in ("profile", "preference"):
    mean = sum(x[k] for x in targets) / n
    np.testing.assert_allclose(np.asarray(grads[mamo.PROBE][k]), np.asarray(mean), rtol=1e-4, atol=1e-7)
    assert float(jnp.abs(mean).max()) > 1e-6


@functools.lru_cache(maxsize=None)
def _write_step(lr: float = 3e-3):
  c = CASE()
  optimizer = optax.adam(lr)
  step = mamo.make_write_step(c.parts.spec, c.parts.predict, optimizer, resolve("mamo", c.config).rates(),
                              tasks_per_batch=4, query_size=c.config.data.query_size,
                              support_size=c.prep.support_size)
  return optimizer, step


def test_the_write_step_applies_the_reference_write_rules():
  c = CASE()
  spec, predict, f, params = c.parts.spec, c.parts.predict, c.prep.features, c.meta["model"]
  optimizer, step = _write_step()
  rng = jax.random.PRNGKey(11)
  state, _ = step(init_state({"model": params}, optimizer, rng), c.prep.train, f)
  batch = sample_batch(c.prep.train, jax.random.fold_in(rng, 0), 4, c.config.data.query_size, c.prep.support_size)
  mem, r = params["memory"], resolve("mamo", c.config).rates()
  profile, preference, bias = [], [], {i: [] for i in range(c.config.mamo.n_layer)}

  @jax.jit
  def query_grad(adapted, b):  # first order: the query gradient of the user-tower kernels at the adapted params
    def query_loss(kernels):
      p = {**adapted, "user_tower": {n: {**adapted["user_tower"][n], "kernel": kernels[n]} for n in kernels}}
      return spec.loss_fn(predict(p, f, b.user, b.query_items), b.query_ratings, b.query_mask)
    return jax.grad(query_loss)({n: v["kernel"] for n, v in adapted["user_tower"].items()})

  for t in range(4):
    b = row(batch, t)
    _, adapted = _adapted(spec)(params, f, b, _support(b))
    tg = mamo.write_targets_of_task(c.parts.model, {"model": params}, f, b.user, adapted)
    profile.append(tg["profile"])
    preference.append(tg["preference"])
    att, _ = mamo.attention_and_profile(c.parts.model, params, f, b.user)
    g = query_grad(adapted, b)
    for i in bias:
      bias[i].append(att[:, None, None] * g[f"layer_{i}"][None])
  new = state.params["model"]["memory"]
  expect = {"profile": (1 - r.alpha) * mem["profile"] + r.alpha * sum(profile) / 4,
            "preference": (1 - r.gamma) * mem["preference"] + r.gamma * sum(preference) / 4,
            **{f"bias_{i}": (1 - r.beta) * mem[f"bias_{i}"] + r.beta * sum(v) / 4 for i, v in bias.items()}}
  for k, v in expect.items():
    np.testing.assert_allclose(np.asarray(new[k]), np.asarray(v), rtol=1e-3, atol=1e-6, err_msg=k)
    assert float(jnp.abs(new[k] - mem[k]).max()) > 1e-6, k
  moved = state.params["model"]["rec"]["out"]["kernel"] - params["rec"]["out"]["kernel"]
  assert float(jnp.abs(moved).max()) > 1e-4  # the other params took the optimizer's step


def test_training_with_writes_lowers_the_query_loss_of_held_out_users():
  c = CASE()
  optimizer, step = _write_step()
  predictor = make_adapted_predictor(c.parts.spec, c.parts.predict)
  f, spec, valid = c.prep.features, c.parts.spec, c.prep.valid_batch

  def query_loss(meta):
    pred = predictor(meta, f, valid, spec.inner_lr)
    return float(jnp.mean(jax.vmap(spec.loss_fn)(pred, valid.query_ratings, valid.query_mask)))

  state = init_state(c.meta, optimizer, jax.random.PRNGKey(7))
  before = query_loss(state.params)
  for _ in range(60):
    state, metrics = step(state, c.prep.train, f)
    assert np.isfinite(float(metrics["loss"]))
  after = query_loss(state.params)
  assert after < before - 0.01, (before, after)


def test_the_block_is_read_by_mamo_only_and_validated():
  c = default_config()
  c.methods = ("maml", "mamo")
  m, maml = resolve("mamo", c), resolve("maml", c)
  assert c.mamo.slots == 3 and c.mamo.memory == "write" and c.mamo.tau == 0.01
  assert m.reads_key("mamo.tau") and not maml.reads_key("mamo.tau")
  assert m.reads_key("meta.inner_lr") and not m.reads_key("meta.learner") and not m.reads_key("model.head")
  check_overrides_used(c, ["mamo.gamma", "meta.inner_steps"])
  c.mamo.first_order = False
  assert not resolve("mamo", c).learner().first_order
  for key, value, message in (("memory", "both", "mamo.memory must be one of"),
                              ("alpha", 1.5, "mamo.alpha is a write rate"),
                              ("n_layer", 0, "mamo.n_layer must be >= 1")):
    bad = default_config()
    bad.methods = ("mamo",)
    bad.mamo[key] = value
    with pytest.raises(ConfigError, match=message):
      validate(bad)


def test_gradient_mode_trains_the_memories_by_gradient_and_write_mode_does_not_differentiate_the_attention():
  c = CASE()
  config = c.config.copy_and_resolve_references()
  config.mamo.memory = "gradient"
  parts = resolve("mamo", config).parts(c.prep)
  assert parts.spec.task_loss is None and parts.model.attention_grad
  b = row(c.batch, 0)
  grads = {}
  for name, p in (("gradient", parts), ("write", c.parts)):
    fn = jax.jit(jax.grad(lambda m, f, t: task_loss(p.spec, p.predict, m, f, t)[0]))
    grads[name] = fn(c.meta, c.prep.features, b)["model"]["memory"]  # the same initial params in both modes
  for key in ("profile", "preference", "bias_0"):
    assert float(jnp.abs(grads["gradient"][key]).max()) > 0, key
  assert float(jnp.abs(grads["write"]["profile"]).max()) == 0  # the attention is not differentiated
  np.testing.assert_allclose(np.asarray(grads["write"]["bias_0"]), np.asarray(grads["gradient"]["bias_0"]),
                             rtol=1e-5, atol=1e-10)  # -τ a ⊗ ∇_θu L either way
