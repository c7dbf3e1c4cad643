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

from metarec_jax.data.tasks import merge_support_query
from metarec_jax.meta.factored import adapt_factored, factored_mode, use_factored
from metarec_jax.meta.inner import adapt, adapt_pattern, flatten, merge, partition, set_loss, unflatten
from metarec_jax.meta.losses import LossFn, make_loss
from metarec_jax.meta.local import LocalTask, local_table_paths, localise, scatter_rows
from metarec_jax.types import Features, MetaParams, PredictFn, TaskBatch

@dataclasses.dataclass(frozen=True)
class LossSpec:
  """The per-set loss of the inner and the outer loop.

  Attributes:
    name: ``mse`` (ratings), ``bce`` or ``bpr`` (implicit feedback, `meta.losses`).
    negatives_per_positive: ``r`` of the implicit sets' grouped layout (BPR pairs within it).
  """

  name: str = "mse"
  negatives_per_positive: int = 0

  @property
  def fn(self) -> LossFn:
    return make_loss(self.name, self.negatives_per_positive)


@dataclasses.dataclass(frozen=True)
class Schedule:
  """How the engine computes a learner's step, never what: every option is tested equal to the plain path.

  Attributes:
    remat: rematerialise inner steps in the backward pass.
    unroll: unroll the inner loop (the benchmarks count FLOPs this way: XLA's
      cost analysis counts a loop body once).
    local_tables: adapt embedding tables on the rows each task uses only
      (`metarec_jax.meta.local`; much less memory and time when tables adapt).
    factored: ``auto``, ``on`` or ``off``: adapt dense layers with factored
      updates (`meta.factored`: no per-task kernel) where they need fewer
      FLOPs, wherever they apply, or never.
  """

  remat: bool = False
  unroll: bool = False
  local_tables: bool = True
  factored: str = "auto"


# A learner's own per-task outer loss: (spec, predict, meta, features, task) -> (loss, aux).
TaskLossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True)
class Learner:
  """A kind of learner: a row of the learner table (`LEARNERS`).

  Attributes:
    kind: the outer update: ``maml`` (gradient of a per-task loss, through
      the inner loop or first order), ``reptile`` (``θ - mean φ``) or
      ``pooled`` (no adaptation).
    adapt: default path filter of the adapted params.
    first_order: stop gradients through the inner gradients by default.
    learn_inner_lr: Meta-SGD's learned per-entry inner rates.
    task_loss: a ``maml``-kind learner's own per-task outer loss (see
      `task_loss` for the signature); None: the query loss after adapting on
      the support set.
  """

  kind: str
  adapt: str = "all"
  first_order: bool = False
  learn_inner_lr: bool = False
  task_loss: TaskLossFn | None = None


LEARNERS: dict[str, Learner] = {
    "maml": Learner("maml", "all"),
    "fomaml": Learner("maml", "all", first_order=True),
    "metasgd": Learner("maml", "all", learn_inner_lr=True),
    "anil": Learner("maml", "head"),
    "melu": Learner("maml", "head"),
    "reptile": Learner("reptile", "all", first_order=True),
    "pooled": Learner("pooled", "all"),
}
KINDS = ("maml", "reptile", "pooled")


def register_learner(name: str, learner: Learner) -> Learner:
  """Adds a learner to `LEARNERS` under ``name``; a method of that name then trains with it.

  Re-registering a name from the same module (a re-imported experiment file)
  replaces the entry; any other clash is an error.

  Raises:
    ValueError: an unknown kind, or ``name`` is taken by another module's learner.
  """
  if learner.kind not in KINDS:
    raise ValueError(f"learner {name!r}: kind must be one of {KINDS}, got {learner.kind!r}")
  if learner.task_loss is not None and learner.kind != "maml":
    raise ValueError(f"learner {name!r}: a task_loss needs kind 'maml'")
  old = LEARNERS.get(name)
  if old is not None and old != learner and _origin(old) != _origin(learner):
    raise ValueError(f"learner {name!r} is already registered; choose another name")
  LEARNERS[name] = learner
  return learner


def _origin(learner: Learner) -> str | None:
  return getattr(learner.task_loss, "__module__", None)


@dataclasses.dataclass(frozen=True)
class LearnerSpec:
  """How one learner adapts and is meta-updated: what it computes, its loss, and how it is computed.

  Attributes:
    name: learner name (a key of `LEARNERS`).
    kind: ``maml``, ``reptile`` or ``pooled``.
    adapt: path filter (alias or regex) of the params adapted in the inner loop.
    inner_lr: inner SGD rate (initial rate for Meta-SGD).
    inner_steps: inner SGD steps.
    first_order: stop gradients through the inner gradients.
    learn_inner_lr: Meta-SGD's learned per-parameter inner rates.
    loss: the inner and outer per-set loss.
    schedule: how the step is computed (remat, unrolling, task-local tables,
      factored updates): the same numbers either way.
    task_loss: the learner's own per-task outer loss, if it has one.
  """

  name: str
  kind: str
  adapt: str = "all"
  inner_lr: float = 0.01
  inner_steps: int = 1
  first_order: bool = False
  learn_inner_lr: bool = False
  loss: LossSpec = LossSpec()
  schedule: Schedule = Schedule()
  task_loss: TaskLossFn | None = None

  @property
  def loss_fn(self) -> LossFn:
    """The inner and outer per-set loss (`meta.losses.make_loss`)."""
    return self.loss.fn

  def with_schedule(self, **changes) -> "LearnerSpec":
    """The same learner computed another way (e.g. ``unroll=True``)."""
    return dataclasses.replace(self, schedule=dataclasses.replace(self.schedule, **changes))


def learner_spec(name: str, *, inner_lr: float, inner_steps: int, adapt: str = "",
                 first_order: bool | None = None, remat: bool = False, local_tables: bool = True,
                 loss: str = "mse", negatives_per_positive: int = 0, factored: str | bool = "auto") -> LearnerSpec:
  """Builds a `LearnerSpec` from a learner name and the meta settings.

  Args:
    name: one of `LEARNERS`.
    inner_lr: inner learning rate (>= 0).
    inner_steps: inner steps (>= 0).
    adapt: adapt filter; empty means the learner's default (``head`` for
      ANIL / MeLU, ``all`` otherwise).
    first_order: overrides the learner's default when not None.
    remat: rematerialise the inner steps.
    local_tables: adapt embedding tables on each task's own rows.
    loss: ``mse``, ``bce`` or ``bpr`` (checked here).
    negatives_per_positive: negatives per positive of implicit sets.
    factored: ``auto`` / ``on`` / ``off`` (or True / False): factored
      dense-layer updates (`meta.factored`; checked here).
  """
  if name not in LEARNERS:
    raise KeyError(f"unknown learner {name!r}; known: {sorted(LEARNERS)}")
  learner = LEARNERS[name]
  if inner_lr < 0:
    raise ValueError(f"inner learning rate must be >= 0, got {inner_lr}")
  if inner_steps < 0:
    raise ValueError(f"inner steps must be >= 0, got {inner_steps}")
  loss_spec = LossSpec(loss, int(negatives_per_positive))
  loss_spec.fn  # raises on an unknown loss or BPR without negatives
  if learner.kind == "pooled":  # the pooled model never adapts (pooled_finetune tunes its own fine-tuning)
    inner_steps = 0
  return LearnerSpec(name=name, kind=learner.kind, adapt=adapt or learner.adapt, inner_lr=float(inner_lr),
                     inner_steps=int(inner_steps),
                     first_order=learner.first_order if first_order is None else bool(first_order),
                     learn_inner_lr=learner.learn_inner_lr, loss=loss_spec,
                     schedule=Schedule(remat=remat, local_tables=bool(local_tables), factored=factored_mode(factored)),
                     task_loss=learner.task_loss)


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
  The returned params are global (full tables): for training and evaluation
  use `adapt_on_support`, which adapts tables on the task's own rows.
  """
  adapted, frozen = partition(meta["model"], spec.adapt)
  fast, support_losses = adapt(predict, adapted, frozen, features, user, items, ratings, mask,
                               _inner_rates(spec, meta, inner_lr), spec.inner_steps,
                               first_order=spec.first_order, remat=spec.schedule.remat, unroll=spec.schedule.unroll,
                               loss_fn=spec.loss_fn)
  return merge(fast, frozen), support_losses


def _inner_rates(spec: LearnerSpec, meta: MetaParams, inner_lr=None):
  if spec.learn_inner_lr:
    return meta["inner_lr"]
  return spec.inner_lr if inner_lr is None else inner_lr


def _localise_if_useful(spec: LearnerSpec, adapted: dict, features: Features, user,
                        item_groups: tuple) -> LocalTask | None:
  """The task on its own rows when embedding tables adapt (and ``spec.schedule.local_tables``), else None."""
  paths = local_table_paths(adapted, features) if (spec.schedule.local_tables and spec.inner_steps) else ()
  if not paths:
    return None
  return localise(features, user, item_groups, paths, {p: adapted[p].shape[0] for p in paths})


@dataclasses.dataclass(frozen=True)
class AdaptedTask:
  """A task after adaptation on its support set, in the coordinates its params use.

  With task-local tables, ``params`` hold only the task's rows and
  ``features``, ``user``, ``support`` and ``query_items`` are rewritten to
  match (see `metarec_jax.meta.local`); otherwise they are the global ones.
  Score the query with ``predict(params, features, user, query_items, support)``.
  """

  params: Any
  features: Features
  user: jax.Array
  support: tuple[jax.Array, jax.Array, jax.Array]
  query_items: jax.Array
  support_losses: jax.Array
  local: LocalTask | None = None


def adapt_on_support(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features, user,
                     support_items, support_ratings, support_mask, query_items, inner_lr=None) -> AdaptedTask:
  """Adapts on one task's support set; the result scores its query items.

  When adapted leaves include embedding tables and ``spec.schedule.local_tables`` is
  on, adaptation runs on the rows the task's user and items index (exactly the
  same numbers as adapting the full tables; tested). When only dense layers
  adapt (MeLU, ANIL), their updates may stay factored (``spec.schedule.factored``,
  `meta.factored`): ``params`` then hold the factors beside the kernels.
  """
  adapted, frozen = partition(meta["model"], spec.adapt)
  lrs = _inner_rates(spec, meta, inner_lr)
  local = _localise_if_useful(spec, adapted, features, user, (support_items, query_items))
  if local is not None:
    adapted = local.gather(adapted)
    lrs = local.gather(lrs) if isinstance(lrs, dict) else lrs
    features, user, (support_items, query_items) = local.features, local.user, local.item_groups
  factored = use_factored(spec.schedule.factored, predict, adapted, lrs, spec.inner_steps, support_items.shape[-1],
                          query_items.shape[-1])
  inner = adapt_factored if factored else adapt
  fast, support_losses = inner(predict, adapted, frozen, features, user, support_items, support_ratings,
                               support_mask, lrs, spec.inner_steps, first_order=spec.first_order,
                               remat=spec.schedule.remat, unroll=spec.schedule.unroll, loss_fn=spec.loss_fn)
  return AdaptedTask(merge(fast, frozen), features, user, (support_items, support_ratings, support_mask),
                     query_items, support_losses, local)


def row(batch: TaskBatch, t: int) -> TaskBatch:
  """Task ``t`` of a batch, as a batch-less TaskBatch (for loops and tests)."""
  return jax.tree_util.tree_map(lambda x: x[t], batch)


def task_loss(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
              task: TaskBatch) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The differentiable per-task outer loss of a maml- or pooled-kind learner.

  A learner with its own ``task_loss`` (`Learner.task_loss`) is called with
  these same arguments; it may build on `query_loss_after_adapting`.

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
                    support=(items, ratings, mask), loo=True, loss_fn=spec.loss_fn)
    return loss, {"support_loss": loss}
  if spec.kind != "maml":
    raise ValueError(f"task_loss is for maml and pooled learners, not {spec.kind!r}")
  if spec.task_loss is not None:
    return spec.task_loss(spec, predict, meta, features, task)
  loss, a = query_loss_after_adapting(spec, predict, meta, features, task)
  before = a.support_losses[0] if spec.inner_steps else loss
  return loss, {"support_loss": before}


def query_loss_after_adapting(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
                              task: TaskBatch) -> tuple[jax.Array, AdaptedTask]:
  """MAML's per-task loss: adapt on the support set, the loss on the query set; and the adapted task."""
  a = adapt_on_support(spec, predict, meta, features, task.user, task.support_items, task.support_ratings,
                       task.support_mask, task.query_items)
  loss = set_loss(predict, a.params, a.features, a.user, a.query_items, task.query_ratings, task.query_mask,
                  support=a.support, loss_fn=spec.loss_fn)
  return loss, a


def reptile_task(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
                 task: TaskBatch) -> tuple[dict[str, jax.Array], jax.Array]:
  """Adapts on the task's whole drawn set; returns (adapted leaves, loss before)."""
  items, ratings, mask = merge_support_query(task)
  adapted, frozen = partition(meta["model"], spec.adapt)
  fast, losses = adapt(predict, adapted, frozen, features, task.user, items, ratings, mask,
                       spec.inner_lr, spec.inner_steps, first_order=True, remat=spec.schedule.remat,
                       unroll=spec.schedule.unroll, loss_fn=spec.loss_fn)
  before = losses[0] if spec.inner_steps else set_loss(
      predict, meta["model"], features, task.user, items, ratings, mask, support=(items, ratings, mask), loo=True,
      loss_fn=spec.loss_fn)
  return fast, before


def _reptile_delta(spec: LearnerSpec, predict: PredictFn, meta: MetaParams, features: Features,
                   task: TaskBatch) -> tuple[dict[str, jax.Array], dict[str, jax.Array], jax.Array]:
  """``θ - φ`` of one task's adapted leaves (local rows for task-local tables), their rows, loss before."""
  items, ratings, mask = merge_support_query(task)
  adapted, frozen = partition(meta["model"], spec.adapt)
  user, rows = task.user, {}
  local = _localise_if_useful(spec, adapted, features, user, (items,))
  if local is not None:
    adapted, rows = local.gather(adapted), local.rows
    features, user, (items,) = local.features, local.user, local.item_groups
  fast, losses = adapt(predict, adapted, frozen, features, user, items, ratings, mask,
                       spec.inner_lr, spec.inner_steps, first_order=True, remat=spec.schedule.remat,
                       unroll=spec.schedule.unroll, loss_fn=spec.loss_fn)
  before = losses[0] if spec.inner_steps else set_loss(
      predict, merge(adapted, frozen), features, user, items, ratings, mask, support=(items, ratings, mask),
      loo=True, loss_fn=spec.loss_fn)
  return {k: adapted[k] - fast[k] for k in fast}, rows, before


def chunked_vmap(fn: Callable, batch: Any, chunk: int) -> Any:
  """``vmap(fn)(batch)`` computed as ``lax.map`` over chunks of ``chunk`` tasks.

  Bounds memory for large task batches when nothing is differentiated through
  it (Reptile's deltas); `meta_gradient` accumulates gradients per chunk
  instead. ``chunk`` must divide the batch size (0 or >= batch size: one
  plain vmap).
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
    deltas, rows, before = chunked_vmap(lambda t: _reptile_delta(spec, predict, meta, features, t), batch,
                                        tasks_per_chunk)
    flat = flatten(meta["model"])
    n = before.shape[0]
    direction = {}
    for k, v in flat.items():  # θ - mean_t φ_t
      if k in rows:
        direction[k] = scatter_rows(v, rows[k], deltas[k]) / n
      elif k in deltas:
        direction[k] = jnp.mean(deltas[k], axis=0)
      else:
        direction[k] = jnp.zeros_like(v)
    grads = {"model": unflatten(direction)}
    loss = jnp.mean(before)
    return loss, grads, {"support_loss": loss}

  def mean_loss(m, tasks):
    losses, aux = jax.vmap(lambda t: task_loss(spec, predict, m, features, t))(tasks)
    return jnp.mean(losses), jax.tree_util.tree_map(jnp.mean, aux)

  value_and_grad = jax.value_and_grad(mean_loss, has_aux=True)
  n = jax.tree_util.tree_leaves(batch)[0].shape[0]
  if not tasks_per_chunk or tasks_per_chunk >= n:
    (loss, aux), grads = value_and_grad(meta, batch)
    return loss, grads, aux
  if n % tasks_per_chunk:
    raise ValueError(f"tasks_per_chunk={tasks_per_chunk} must divide the task batch size {n}")
  # Gradient accumulation: each chunk's forward and backward run together, so
  # only one chunk's per-task fast weights and residuals are ever live.
  chunks = n // tasks_per_chunk
  shaped = jax.tree_util.tree_map(lambda x: x.reshape((chunks, tasks_per_chunk) + x.shape[1:]), batch)

  def accumulate(total, tasks):
    out = value_and_grad(meta, tasks)
    return jax.tree_util.tree_map(jnp.add, total, out), None

  first = jax.eval_shape(value_and_grad, meta, jax.tree_util.tree_map(lambda x: x[0], shaped))
  zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), first)
  ((loss, aux), grads), _ = jax.lax.scan(accumulate, zeros, shaped)
  # Equal chunks: the mean over tasks is the mean of the chunk means.
  return jax.tree_util.tree_map(lambda x: x / chunks, (loss, grads, aux))


__all__ = ["LEARNERS", "Learner", "LossSpec", "Schedule", "register_learner", "query_loss_after_adapting",
           "LearnerSpec", "learner_spec", "init_meta_params", "adapt_task", "adapt_on_support",
           "AdaptedTask", "task_loss",
           "reptile_task", "meta_gradient", "chunked_vmap", "row", "adapt_pattern"]
