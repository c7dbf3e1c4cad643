"""TaNP: the shared support-conditioned checks, its KL and clustering terms, the transformer (implicit run: test_successors_implicit)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metarec_jax.methods.tanp as tanp  # registers tanp and tanp_gating before the methods package does
from metarec_jax import ConfigError, default_config, validate
from metarec_jax.meta.inner import flatten
from metarec_jax.meta.learners import meta_gradient, row, task_loss
from metarec_jax.methods import check_overrides_used, resolve
from metarec_jax.methods.learned import method_key
from metarec_jax.models.conditioned import _columns, apply_conditioned

from tests.methods import conditioned_checks as checks


CASE = checks.case("tanp")


@functools.lru_cache(maxsize=None)
def variant(name: str, **model) -> checks.Case:
  """Method ``name`` on CASE's prepared data and batch (``model.*`` changed), with its own initial params."""
  base = CASE()
  config = base.config.copy_and_resolve_references()
  config.methods = (name,)
  for key, value in model.items():
    config.model[key] = value
  method = resolve(name, config)
  parts = method.parts(base.prep)
  meta = {"model": parts.init(base.prep.features, method_key(0, name))}
  return dataclasses.replace(base, name=name, config=method.config, parts=parts, meta=meta)


def fits_a_fixed_batch(c: checks.Case, steps: int = 25, lr: float = 1e-2) -> tuple[float, float]:
  """Adam on the engine's meta-gradient of one fixed batch lowers that batch's training objective."""
  optimizer = optax.adam(lr)
  f, spec, predict = c.prep.features, c.parts.spec, c.parts.predict

  @jax.jit
  def step(meta, state):
    loss, grads, _ = meta_gradient(spec, predict, meta, f, c.batch)
    updates, state = optimizer.update(grads, state, meta)
    return optax.apply_updates(meta, updates), state, loss

  meta, state = c.meta, optimizer.init(c.meta)
  losses = []
  for _ in range(steps):
    meta, state, loss = step(meta, state)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.97 * losses[0], f"{c.name}: {losses[0]} -> {losses[-1]}"
  return losses[0], losses[-1]


def _support(b):
  return b.support_items, b.support_ratings, b.support_mask


def test_the_shared_checks_pass():
  checks.run_all(CASE())


def test_the_gating_film_decoder():
  c = variant("tanp_gating")
  assert c.config.tanp.decoder == "gating" and c.parts.model.decoder == "gating"
  dec = c.meta["model"]["decoder"]
  assert {"film_0_eta", "film_2_delta"} <= set(dec) and "film_0_eta" not in CASE().meta["model"]["decoder"]
  checks.scores_are_finite_and_shaped(c)
  checks.empty_support_gives_the_prior(c)
  fits_a_fixed_batch(c)


def test_the_kl_is_zero_without_targets_and_positive_with_them():
  c = CASE()
  b = row(c.batch, 0)
  params, f, model = c.meta["model"], c.prep.features, c.parts.model
  _, empty = apply_conditioned(model, params, f, b.user, b.query_items, _support(b),
                               target=(b.query_ratings, jnp.zeros_like(b.query_mask)))
  _, full = apply_conditioned(model, params, f, b.user, b.query_items, _support(b),
                              target=(b.query_ratings, b.query_mask))
  assert set(empty) == set(full) == {"kl", "cluster"}
  assert abs(float(empty["kl"])) < 1e-7  # q(z | C ∪ ∅) is q(z | C)
  assert float(full["kl"]) > 1e-6
  # the target's ratings reach the posterior: other ratings, another KL
  _, other = apply_conditioned(model, params, f, b.user, b.query_items, _support(b),
                               target=(6.0 - b.query_ratings, b.query_mask))
  assert abs(float(other["kl"]) - float(full["kl"])) > 1e-6
  # scoring (no target) decodes with the prior mean: the same scores as with an empty target
  prior = c.parts.predict(params, f, b.user, b.query_items, _support(b))
  s_empty, _ = apply_conditioned(model, params, f, b.user, b.query_items, _support(b),
                                 target=(b.query_ratings, jnp.zeros_like(b.query_mask)))
  np.testing.assert_allclose(np.asarray(prior), np.asarray(s_empty), atol=1e-6)


def test_the_soft_assignment_sums_to_one_and_the_target_sharpens_it():
  c = CASE()
  model, params, f = c.parts.model, c.meta["model"], c.prep.features
  k = c.config.tanp.clusters_k
  assert params["memory"]["centres"].shape == (k, c.config.tanp.taskenc_final_dim)
  for t in range(3):
    b = row(c.batch, t)
    cols = _columns(model, f, b.user, b.query_items, _support(b))
    _, state = model.apply({"params": params}, *cols, False, None, mutable=["intermediates"])
    (assign,) = state["intermediates"]["assignment"]
    assert assign.shape == (k,) and bool(jnp.all(assign > 0))
    np.testing.assert_allclose(float(jnp.sum(assign)), 1.0, rtol=1e-6)
  rng = np.random.default_rng(0)
  cents, o = jnp.asarray(rng.normal(size=(5, 3))), jnp.asarray(rng.normal(size=3))
  assign = tanp.soft_assignment(o, cents, 1.0)
  np.testing.assert_allclose(float(jnp.sum(assign)), 1.0, rtol=1e-6)
  assert int(jnp.argmax(assign)) == int(jnp.argmin(jnp.linalg.norm(o - cents, axis=-1)))  # nearest centre
  target = tanp.target_distribution(assign)
  np.testing.assert_allclose(float(jnp.sum(target)), 1.0, rtol=1e-6)
  assert float(jnp.max(target)) > float(jnp.max(assign))
  assert float(tanp.clustering_loss(assign)) > 0
  assert abs(float(tanp.clustering_loss(jnp.full((4,), 0.25)))) < 1e-7
  # the reference's batch form: frequencies f_k = Σ_i c_ik over a batch of assignments
  batch = jax.nn.softmax(jnp.asarray(rng.normal(size=(6, 5))), axis=-1)
  ref = batch ** 2 / batch.sum(0, keepdims=True)
  np.testing.assert_allclose(np.asarray(tanp.target_distribution(batch, batch.sum(0))),
                             np.asarray(ref / ref.sum(1, keepdims=True)), rtol=1e-6)


def test_the_task_loss_is_the_decoder_loss_over_context_and_target_plus_the_regularisers():
  c = CASE()
  b, params, f, model = row(c.batch, 1), c.meta["model"], c.prep.features, c.parts.model
  loss_of = lambda m: task_loss(c.parts.spec, c.parts.predict, m, f, b)
  (loss, aux), grads = jax.jit(jax.value_and_grad(loss_of, has_aux=True))(c.meta)
  assert set(aux) == {"support_loss", "reg_kl", "reg_cluster"}
  assert float(aux["reg_kl"]) > 0 and float(aux["reg_cluster"]) >= 0
  items = jnp.concatenate([b.query_items, b.support_items])
  labels = jnp.concatenate([b.query_ratings, b.support_ratings])
  mask = jnp.concatenate([b.query_mask, b.support_mask])
  scores, _ = apply_conditioned(model, params, f, b.user, items, _support(b),
                                target=(labels, jnp.concatenate([b.query_mask, jnp.zeros_like(b.support_mask)])))
  recon = c.parts.spec.loss_fn(scores, labels, mask)
  np.testing.assert_allclose(float(loss), float(recon + aux["reg_kl"] + aux["reg_cluster"]), rtol=1e-5)
  query_only = tanp.tanp_task_loss(model, context_in_loss=False)
  loss_q, aux_q = jax.jit(lambda m: query_only(c.parts.spec, c.parts.predict, m, f, b))(c.meta)
  np.testing.assert_allclose(float(loss_q), float(aux_q["support_loss"] + aux_q["reg_kl"] + aux_q["reg_cluster"]),
                             rtol=1e-5)
  np.testing.assert_allclose(float(aux_q["support_loss"]), float(aux["support_loss"]), rtol=1e-5)
  assert abs(float(loss_q) - float(loss)) > 1e-6  # the context's reconstruction is in the default loss
  # the clustering loss trains the centres of the global pool
  assert float(jnp.abs(grads["model"]["memory"]["centres"]).max()) > 0


def test_the_block_holds_the_reference_defaults_and_is_read_by_tanp_only():
  c = default_config()
  assert dict(c.tanp) == tanp.DEFAULTS
  assert (c.tanp.clusters_k, c.tanp.cluster_weight, c.tanp.z_dim, c.tanp.decoder) == (10, 1.0, 32, "film")
  c.methods = ("maml", "tanp", "tanp_gating")
  t, g, maml = resolve("tanp", c), resolve("tanp_gating", c), resolve("maml", c)
  assert t.reads_key("tanp.z_dim") and not maml.reads_key("tanp.z_dim")
  assert t.config.meta.inner_steps == 0 and g.config.tanp.decoder == "gating"
  assert g.ignores("tanp.decoder") == "tanp_gating sets tanp.decoder='gating' itself"
  check_overrides_used(c, ["tanp.clusters_k"])
  c.methods = ("tanp_gating",)
  with pytest.raises(ConfigError, match="tanp.decoder"):
    check_overrides_used(c, ["tanp.decoder"])
  c.methods = ("tanp",)
  c.tanp.decoder = "films"
  c.tanp.clusters_k = 0
  with pytest.raises(ConfigError, match=r"tanp.decoder must be one of(.|\n)*tanp.clusters_k must be >= 1"):
    validate(c)


def test_it_runs_with_the_field_transformer_extractor():
  c = variant("tanp", extractor="transformer")
  assert c.parts.model.extractor == "transformer"
  loss, grads, _ = jax.jit(lambda m: meta_gradient(c.parts.spec, c.parts.predict, m, c.prep.features, c.batch))(c.meta)
  assert np.isfinite(float(loss))
  ext = flatten(grads["model"]["extractor"])
  assert "item/block_0/attention/query/kernel" in ext  # the transformer is the extractor ...
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in ext.values())
  assert float(jnp.abs(ext["item/block_0/attention/query/kernel"]).max()) > 0  # ... and it is trained
  assert float(jnp.abs(ext["user/block_0/attention/query/kernel"]).max()) > 0
