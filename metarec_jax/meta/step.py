"""The jitted meta-train step: draw a task batch, meta-gradient, optax update."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from metarec_jax.data.tasks import Features, TaskSet, sample_batch
from metarec_jax.meta.learners import LearnerSpec, meta_gradient
from metarec_jax.models.model import PredictFn


@flax.struct.dataclass
class MetaTrainState:
  """Everything a meta-training run needs to continue: a pure value."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_optimizer(name: str = "adam", lr: float = 1e-3, clip_norm: float = 0.0,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The outer optimizer: ``adam`` (default), ``adamw`` or ``sgd``, optional clipping."""
  if lr <= 0:
    raise ValueError(f"optimizer learning rate must be > 0, got {lr}")
  if name == "adam":
    opt = optax.adam(lr) if not weight_decay else optax.adamw(lr, weight_decay=weight_decay)
  elif name == "adamw":
    opt = optax.adamw(lr, weight_decay=weight_decay)
  elif name == "sgd":
    opt = optax.sgd(lr)
  else:
    raise ValueError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")
  if clip_norm and clip_norm > 0:
    opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
  return opt


def global_norm(tree: Any) -> jax.Array:
  """Euclidean norm of all leaves together."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def init_state(params: Any, optimizer: optax.GradientTransformation, rng: jax.Array) -> MetaTrainState:
  """A fresh state. Params are copied: the step donates the state's buffers,
  and the caller's arrays must survive that."""
  @jax.jit
  def fresh(params, rng):
    params = jax.tree_util.tree_map(jnp.copy, params)
    return MetaTrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                          rng=jnp.copy(rng))

  return fresh(params, rng)


def make_meta_train_step(spec: LearnerSpec, predict: PredictFn, optimizer: optax.GradientTransformation,
                         *, tasks_per_batch: int, query_size: int, support_size: int,
                         tasks_per_chunk: int = 0, augment: Callable | None = None,
                         jit: bool = True) -> Callable:
  """Builds ``step(state, tasks, features) -> (state, metrics)``.

  The batch is drawn inside the step from ``fold_in(state.rng, state.step)``,
  so a run is a pure function of its initial state and a resumed run repeats
  the same batches. The state argument is donated. ``augment(key, features)
  -> features`` (e.g. item-cold simulation) runs inside the step.
  """

  def step(state: MetaTrainState, tasks: TaskSet, features: Features):
    key = jax.random.fold_in(state.rng, state.step)
    if augment is not None:
      key, k_aug = jax.random.split(key)
      features = augment(k_aug, features)
    batch = sample_batch(tasks, key, tasks_per_batch, query_size, support_size)
    loss, grads, aux = meta_gradient(spec, predict, state.params, features, batch, tasks_per_chunk)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": global_norm(grads), "param_norm": global_norm(params), **aux}
    return MetaTrainState(state.step + 1, params, opt_state, state.rng), metrics

  return jax.jit(step, donate_argnums=(0,)) if jit else step
