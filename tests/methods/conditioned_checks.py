"""The checks every support-conditioned method passes (TaNP, CMML / ColdNAS, LWA / NLBA, yours).

A method's test module builds a `Case` once (one compile per module) and
calls the checks:

    CASE = conditioned_checks.case("tanp")          # module level, lazily built

    def test_vmapped_equals_the_per_task_loop():
      conditioned_checks.vmapped_equals_loop(CASE())

Each check asserts, and each can fail: shapes and finiteness, the vmapped
meta-gradient equals the mean of per-task gradients computed one task at a
time, padding the support set with masked entries changes no score, an empty
support set gives the prior prediction whatever the padded entries hold,
leave-one-out scores equal scoring each support item with itself removed,
and a short training run lowers the query loss on a fixed batch.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metarec_jax.data import sample_batch
from metarec_jax.meta.learners import meta_gradient, row, task_loss
from metarec_jax.meta.step import init_state, make_meta_train_step
from metarec_jax.methods import resolve
from metarec_jax.methods.learned import ModelParts, method_key
from metarec_jax.prepared import Prepared, prepare

from tests.conftest import tiny_config


@dataclasses.dataclass
class Case:
  """One method on the tiny synthetic data: its parts, initial meta params and a fixed batch."""

  name: str
  config: Any
  prep: Prepared
  parts: ModelParts
  meta: dict
  batch: Any

  @functools.cached_property
  def predict(self) -> Callable:
    """The method's predict function, jitted (one compile per argument shape; the checks call it often)."""
    return jax.jit(self.parts.predict, static_argnames=("loo", "capture"))


def case(name: str, configure: Callable | None = None) -> Callable[[], Case]:
  """A lazily built, cached `Case` for method ``name`` (``configure(config)`` may change the tiny config)."""

  @functools.lru_cache(maxsize=None)
  def build() -> Case:
    c = tiny_config()
    c.methods = (name,)
    if configure is not None:
      configure(c)
    method = resolve(name, c)
    prep = prepare(method.config, 0)
    parts = method.parts(prep)
    params = parts.init(prep.features, method_key(0, name))
    batch = sample_batch(prep.train, jax.random.PRNGKey(3), 6, method.config.data.query_size,
                         prep.support_size)
    return Case(name, method.config, prep, parts, {"model": params}, batch)

  return build


def scores_are_finite_and_shaped(c: Case) -> None:
  predict, b = c.predict, row(c.batch, 0)
  out = predict(c.meta["model"], c.prep.features, b.user, b.query_items,
                (b.support_items, b.support_ratings, b.support_mask))
  assert out.shape == b.query_items.shape
  assert bool(jnp.all(jnp.isfinite(out)))


def vmapped_equals_loop(c: Case, rtol: float = 1e-4, atol: float = 1e-6) -> None:
  """The engine's vmapped meta-gradient equals the mean of per-task gradients taken one task at a time."""
  spec, predict = c.parts.spec, c.parts.predict
  loss, grads, _ = jax.jit(lambda m, f, b: meta_gradient(spec, predict, m, f, b))(c.meta, c.prep.features, c.batch)
  n = c.batch.num_tasks
  one = jax.jit(jax.value_and_grad(lambda m, f, t: task_loss(spec, predict, m, f, t)[0]))
  per = [one(c.meta, c.prep.features, row(c.batch, t)) for t in range(n)]
  loop_loss = sum(float(l) for l, _ in per) / n
  loop_grads = jax.tree_util.tree_map(lambda *g: sum(g) / n, *[g for _, g in per])
  np.testing.assert_allclose(float(loss), loop_loss, rtol=rtol, atol=atol)
  for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(loop_grads)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads)), "every gradient is zero"


def _padded(b, extra: int, key) -> tuple:
  """The task's support set with ``extra`` masked entries holding random items and ratings."""
  k1, k2 = jax.random.split(key)
  n_items = int(b.support_items.max()) + 2
  items = jnp.concatenate([b.support_items, jax.random.randint(k1, (extra,), 1, n_items)])
  ratings = jnp.concatenate([b.support_ratings, jax.random.uniform(k2, (extra,), minval=1, maxval=5)])
  mask = jnp.concatenate([b.support_mask, jnp.zeros((extra,), bool)])
  return items, ratings, mask


def padding_changes_nothing(c: Case, atol: float = 1e-5) -> None:
  """Masked support entries (any item, any rating) change no score; so do masked entries at the end."""
  predict, b = c.predict, row(c.batch, 1)
  params, f = c.meta["model"], c.prep.features
  base = predict(params, f, b.user, b.query_items, (b.support_items, b.support_ratings, b.support_mask))
  padded = predict(params, f, b.user, b.query_items, _padded(b, 7, jax.random.PRNGKey(5)))
  np.testing.assert_allclose(np.asarray(base), np.asarray(padded), atol=atol)
  # rewriting the contents of already-masked entries changes nothing either
  items, ratings, mask = _padded(b, 7, jax.random.PRNGKey(6))
  mask = mask.at[0].set(False)
  a = predict(params, f, b.user, b.query_items, (items, ratings, mask))
  b2 = predict(params, f, b.user, b.query_items, (items.at[0].set(items[1]), ratings.at[0].set(1.0), mask))
  np.testing.assert_allclose(np.asarray(a), np.asarray(b2), atol=atol)


def empty_support_gives_the_prior(c: Case, atol: float = 1e-5) -> None:
  """With every support entry masked, the scores are the prior's: the same as with no support at all."""
  predict, b = c.predict, row(c.batch, 2)
  params, f = c.meta["model"], c.prep.features
  prior = predict(params, f, b.user, b.query_items, None)
  masked = predict(params, f, b.user, b.query_items,
                   (b.support_items, b.support_ratings, jnp.zeros_like(b.support_mask)))
  np.testing.assert_allclose(np.asarray(prior), np.asarray(masked), atol=atol)
  given = predict(params, f, b.user, b.query_items, (b.support_items, b.support_ratings, b.support_mask))
  assert float(jnp.max(jnp.abs(given - prior))) > 1e-6, "the support set changes nothing"


def loo_equals_scoring_without_the_item(c: Case, atol: float = 1e-5) -> None:
  """Leave-one-out scores of the support items equal scoring each with its own entry masked."""
  predict, b = c.predict, row(c.batch, 3)
  params, f = c.meta["model"], c.prep.features
  support = (b.support_items, b.support_ratings, b.support_mask)
  loo = predict(params, f, b.user, b.support_items, support, loo=True)
  for j in (0, 2):
    keep = b.support_mask.at[j].set(False)
    alone = predict(params, f, b.user, b.support_items[j:j + 1], (b.support_items, b.support_ratings, keep))
    np.testing.assert_allclose(float(loo[j]), float(alone[0]), atol=atol)


def training_lowers_the_query_loss(c: Case, steps: int = 40, lr: float = 3e-3) -> tuple[float, float]:
  """A short run of the engine's step lowers the mean query loss on a fixed batch; returns (before, after)."""
  spec, predict, f = c.parts.spec, c.parts.predict, c.prep.features

  @jax.jit
  def query_loss_fn(meta):
    def one(t):
      support = (t.support_items, t.support_ratings, t.support_mask)
      scores = c.parts.predict(meta["model"], f, t.user, t.query_items, support)
      return spec.loss_fn(scores, t.query_ratings, t.query_mask)
    return jnp.mean(jax.vmap(one)(c.batch))

  query_loss = lambda meta: float(query_loss_fn(meta))
  optimizer = optax.adam(lr)
  step = make_meta_train_step(spec, predict, optimizer, tasks_per_batch=8, query_size=c.config.data.query_size,
                              support_size=c.prep.support_size)
  state = init_state(c.meta, optimizer, jax.random.PRNGKey(11))
  before = query_loss(state.params)
  for _ in range(steps):
    state, metrics = step(state, c.prep.train, f)
    assert np.isfinite(float(metrics["loss"]))
  after = query_loss(state.params)
  assert after < before, f"{c.name}: query loss did not fall ({before:.4f} -> {after:.4f})"
  return before, after


# Every check above by name (a test module parametrises over the ones it runs).
CHECKS: dict[str, Callable[[Case], Any]] = {
    "finite_and_shaped": scores_are_finite_and_shaped,
    "vmapped_equals_loop": vmapped_equals_loop,
    "padding_changes_nothing": padding_changes_nothing,
    "empty_support_gives_the_prior": empty_support_gives_the_prior,
    "loo_equals_scoring_without_the_item": loo_equals_scoring_without_the_item,
    "training_lowers_the_query_loss": training_lowers_the_query_loss,
}


def run_all(c: Case) -> None:
  """Every check above, in one call (for methods with no check of their own to add)."""
  scores_are_finite_and_shaped(c)
  vmapped_equals_loop(c)
  padding_changes_nothing(c)
  empty_support_gives_the_prior(c)
  loo_equals_scoring_without_the_item(c)
  training_lowers_the_query_loss(c)
