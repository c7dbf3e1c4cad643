"""Meta-learners as per-task losses (or update directions) over one engine.

Every learner is a `LearnerSpec`: which params adapt, how many inner steps at
which rate, first or second order, and the kind of outer update:

* ``maml``: outer gradient of the post-adaptation query loss, through the
  inner loop (second order) or with the inner gradients stopped (first order).
  MAML, FOMAML, Meta-SGD and ANIL / MeLU are all of this kind.
* ``reptile``: adapt on the task's whole drawn set; the outer "gradient" is
  ``θ - mean_t φ_t`` over the adapted leaves, fed to the outer optimizer.
* ``pooled``: no adaptation; the loss of the shared params on all of a task's
  drawn ratings (the non-meta baseline, trained by the same step).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from metarec_jax.data.tasks import Features, TaskBatch, merge_support_query
from metarec_jax.meta.inner import adapt, adapt_pattern, flatten, merge, partition, set_loss, unflatten
from metarec_jax.models.model import PredictFn

MetaParams = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
  """How one learner adapts and is meta-updated.

  Attributes:
    name: learner name (``maml``, ``fomaml``, ``metasgd``, ``reptile``, ``anil``,
      ``melu``, ``pooled``).
    kind: ``maml``, ``reptile`` or ``pooled``.
    adapt: path filter (alias or regex) of the params adapted in the inner loop.
    inner_lr: inner SGD rate (initial rate for Meta-SGD).
    inner_steps: inner SGD steps.
    first_order: stop gradients through the inner gradients.
    learn_inner_lr: Meta-SGD's learned per-parameter inner rates.
    remat: rematerialise inner steps in the backward pass.
  """

  name: str
  kind: str
  adapt: str = "all"
  inner_lr: float = 0.01
  inner_steps: int = 1
  first_order: bool = False
  learn_inner_lr: bool = False
  remat: bool = False


# name -> (kind, default adapt filter, first_order, learn_inner_lr)
LEARNERS: dict[str, tuple[str, str, bool, bool]] = {
    "maml": ("maml", "all", False, False),
    "fomaml": ("maml", "all", True, False),
    "metasgd": ("maml", "all", False, True),
    "anil": ("maml", "head", False, False),
    "melu": ("maml", "head", False, False),
    "reptile": ("reptile", "all", True, False),
    "pooled": ("pooled", "all", False, False),
}


def learner_spec(name: str, *, inner_lr: float, inner_steps: int, adapt: str = "",
                 first_order: bool | None = None, remat: bool = False) -> LearnerSpec:
  """Builds a `LearnerSpec` from a learner name and the meta settings.

  Args:
    name: one of `LEARNERS`.
    inner_lr: inner learning rate (>= 0).
    inner_steps: inner steps (>= 0).
    adapt: adapt filter; empty means the learner's default (``head`` for
      ANIL / MeLU, ``all`` otherwise).
    first_order: overrides the learner's default when not None.
    remat: rematerialise the inner steps.
  """
  if name not in LEARNERS:
    raise KeyError(f"unknown learner {name!r}; known: {sorted(LEARNERS)}")
  kind, default_adapt, fo, learn_lr = LEARNERS[name]
  if inner_lr < 0:
    raise ValueError(f"inner learning rate must be >= 0, got {inner_lr}")
  if inner_steps < 0:
    raise ValueError(f"inner steps must be >= 0, got {inner_steps}")
  if kind == "pooled":  # the pooled model never adapts (pooled_finetune tunes its own fine-tuning)
    inner_steps = 0
  return LearnerSpec(name=name, kind=kind, adapt=adapt or default_adapt, inner_lr=float(inner_lr),
                     inner_steps=int(inner_steps), first_order=fo if first_order is None else bool(first_order),
                     learn_inner_lr=learn_lr, remat=remat)


def init_meta_params(spec: LearnerSpec, model_params: Any) -> MetaParams:
  """Wraps model params; Meta-SGD adds one learned inner rate per adapted entry."""
  meta: MetaParams = {"model": model_params}
  if spec.learn_inner_lr:
    adapted, _ = partition(model_params, spec.adapt)
    meta["inner_lr"] = {k: jnp.full_like(v, spec.inner_lr) for k, v in adapted.items()}
  return meta


def adapt_task(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features, user,
               items, ratings, mask, inner_lr=None):
  """Adapts the model to one set of one task's ratings; returns full params.

  ``inner_lr`` overrides the spec's rate (used to tune fine-tuning baselines).
  """
  adapted, frozen = partition(meta["model"], spec.adapt)
  if spec.learn_inner_lr:
    lrs = meta["inner_lr"]
  else:
    lrs = spec.inner_lr if inner_lr is None else inner_lr
  fast, support_losses = adapt(predict, adapted, frozen, features, user, items, ratings, mask, lrs,
                               spec.inner_steps, first_order=spec.first_order, remat=spec.remat)
  return merge(fast, frozen), support_losses


def row(batch: TaskBatch, t: int) -> TaskBatch:
  """Task ``t`` of a batch, as a batch-less TaskBatch (for loops and tests)."""
  return jax.tree_util.tree_map(lambda x: x[t], batch)


def task_loss(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
              task: TaskBatch) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The differentiable per-task outer loss of a maml- or pooled-kind learner.

  Args:
    spec: the learner.
    predict: the model's predict function.
    meta: meta params (``{"model": ..., ["inner_lr": ...]}``).
    features: feature tables.
    task: one task (no batch axis).

  Returns:
    (loss, aux) where aux holds the support loss before adaptation.
  """
  if spec.kind == "pooled":
    items, ratings, mask = merge_support_query(task)
    loss = set_loss(predict, meta["model"], features, task.user, items, ratings, mask,
                    support=(items, ratings, mask), loo=True)
    return loss, {"support_loss": loss}
  if spec.kind != "maml":
    raise ValueError(f"task_loss is for maml and pooled learners, not {spec.kind!r}")
  params, support_losses = adapt_task(spec, predict, meta, features, task.user, task.support_items,
                                      task.support_ratings, task.support_mask)
  loss = set_loss(predict, params, features, task.user, task.query_items, task.query_ratings,
                  task.query_mask, support=(task.support_items, task.support_ratings, task.support_mask))
  before = support_losses[0] if spec.inner_steps else loss
  return loss, {"support_loss": before}


def reptile_task(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
                 task: TaskBatch) -> tuple[dict[str, jax.Array], jax.Array]:
  """Adapts on the task's whole drawn set; returns (adapted leaves, loss before)."""
  items, ratings, mask = merge_support_query(task)
  adapted, frozen = partition(meta["model"], spec.adapt)
  fast, losses = adapt(predict, adapted, frozen, features, task.user, items, ratings, mask,
                       spec.inner_lr, spec.inner_steps, first_order=True, remat=spec.remat)
  before = losses[0] if spec.inner_steps else set_loss(
      predict, meta["model"], features, task.user, items, ratings, mask, support=(items, ratings, mask), loo=True)
  return fast, before


def chunked_vmap(fn: Callable, batch: Any, chunk: int) -> Any:
  """``vmap(fn)(batch)`` computed as ``lax.map`` over chunks of ``chunk`` tasks.

  Bounds memory for large task batches; ``chunk`` must divide the batch size
  (0 or >= batch size: one plain vmap).
  """
  n = jax.tree_util.tree_leaves(batch)[0].shape[0]
  if not chunk or chunk >= n:
    return jax.vmap(fn)(batch)
  if n % chunk:
    raise ValueError(f"tasks_per_chunk={chunk} must divide the task batch size {n}")
  shaped = jax.tree_util.tree_map(lambda x: x.reshape((n // chunk, chunk) + x.shape[1:]), batch)
  out = jax.lax.map(jax.vmap(fn), shaped)
  return jax.tree_util.tree_map(lambda x: x.reshape((n,) + x.shape[2:]), out)


def meta_gradient(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
                  batch: TaskBatch, tasks_per_chunk: int = 0):
  """Outer loss and gradient (or update direction) over a batch of tasks.

  Returns:
    (loss, grads, aux): the mean per-task outer loss, a pytree shaped like
    ``meta``, and mean auxiliary metrics.
  """
  if spec.kind == "reptile":
    fast, before = chunked_vmap(lambda t: reptile_task(spec, predict, meta, features, t), batch,
                                tasks_per_chunk)
    flat = flatten(meta["model"])
    direction = {k: (v - jnp.mean(fast[k], axis=0) if k in fast else jnp.zeros_like(v))
                 for k, v in flat.items()}
    grads = {"model": unflatten(direction)}
    loss = jnp.mean(before)
    return loss, grads, {"support_loss": loss}

  def mean_loss(m):
    losses, aux = chunked_vmap(lambda t: task_loss(spec, predict, m, features, t), batch,
                               tasks_per_chunk)
    return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, aux)

  (loss, aux), grads = jax.value_and_grad(mean_loss, has_aux=True)(meta)
  return loss, grads, aux


__all__ = ["LEARNERS", "LearnerSpec", "learner_spec", "init_meta_params", "adapt_task", "task_loss",
           "reptile_task", "meta_gradient", "chunked_vmap", "row", "adapt_pattern"]
