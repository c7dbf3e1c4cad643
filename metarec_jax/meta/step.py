"""The jitted meta-train step: draw a task batch, meta-gradient, optax update."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from metarec_jax.data.negatives import with_train_negatives
from metarec_jax.data.tasks import sample_batch
from metarec_jax.meta.learners import LearnerSpec, meta_gradient
from metarec_jax.types import Features, PredictFn, TaskSet


@flax.struct.dataclass
class MetaTrainState:
  """Everything a meta-training run needs to continue: a pure value."""

  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array


def make_optimizer(name: str = "adam", lr: float = 1e-3, clip_norm: float = 0.0,
                   weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The outer optimizer: ``adam`` (default), ``adamw`` or ``sgd``, optional clipping.

  ``lr`` may be a traced value (a population member's rate, `meta.population`).
  """
  if isinstance(lr, (int, float)) and lr <= 0:
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


TASK_AXIS = "tasks"
NEGATIVES_STREAM = 0x6E6567  # fold_in tag of the batch's negative-sampling key


def task_mesh(num_devices: int = 0) -> Mesh:
  """A one-axis mesh (``tasks``) over the first ``num_devices`` devices (0: all).

  Under several processes (`metarec_jax.distributed`) the devices are the
  global ones, every process's, and the mesh must span them all: each
  process takes part in every step.

  Raises:
    ValueError: more devices than present, or (several processes) fewer than
      all global devices.
  """
  devices = jax.devices()
  n = num_devices or len(devices)
  if n > len(devices):
    raise ValueError(f"asked for {n} devices, only {len(devices)} present")
  if jax.process_count() > 1 and n != len(devices):
    raise ValueError(f"asked for {n} devices, but a run over {jax.process_count()} processes shards the task "
                     f"batch over all {len(devices)} global devices: set train.devices=0")
  return Mesh(np.array(devices[:n]), (TASK_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Copies every leaf of ``tree`` to all devices of ``mesh``.

  Under several processes each one passes its own copy of the same value and
  the leaves become global arrays (`distributed.replicate_global`);
  `jax.device_put` cannot reach other processes' devices.
  """
  if jax.process_count() > 1:
    from metarec_jax.distributed import replicate_global
    return replicate_global(tree, mesh)
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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


def make_batch_draw(*, tasks_per_batch: int, query_size: int, support_size: int,
                    augment: Callable | None = None, negatives_per_positive: int = 0,
                    mesh: Mesh | None = None) -> Callable:
  """Builds ``draw(state, tasks, features) -> (features, batch)``: the task batch of step ``state.step``.

  The one place a meta-train step draws its batch (`make_meta_train_step`,
  and method steps such as MAMO's memory writes): the key is
  ``fold_in(state.rng, state.step)``, so a run is a pure function of its
  initial state and a resumed run repeats the same batches. ``augment(key,
  features) -> features`` (e.g. item-cold simulation) changes the features
  the step sees.

  With ``negatives_per_positive = r > 0`` (implicit feedback) every support and
  query positive of the batch is joined by ``r`` negatives drawn inside the
  step (`data.negatives.with_train_negatives`) from ``fold_in(key, NEGATIVES_STREAM)``
  and each task's user id, with the sampler ``features.extra`` holds (the seen
  matrix and the training pool's log-weights, or the sorted per-user lists of
  ``data.negative_sampler=sorted``). With a ``mesh`` (one axis, named ``tasks``) the
  batch is sharded over its devices.

  Raises:
    ValueError: ``tasks_per_batch`` is not a multiple of the mesh's devices.
  """
  if mesh is not None and tasks_per_batch % mesh.size:
    raise ValueError(f"tasks_per_batch={tasks_per_batch} must be a multiple of the {mesh.size} devices")

  def draw(state: MetaTrainState, tasks: TaskSet, features: Features):
    key = jax.random.fold_in(state.rng, state.step)
    if augment is not None:
      key, k_aug = jax.random.split(key)
      features = augment(k_aug, features)
    batch = sample_batch(tasks, key, tasks_per_batch, query_size, support_size)
    if negatives_per_positive:
      batch = with_train_negatives(batch, jax.random.fold_in(key, NEGATIVES_STREAM), features.extra,
                                   negatives_per_positive)
    if mesh is not None:
      batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, PartitionSpec(TASK_AXIS)))
    return features, batch

  return draw


def make_meta_train_step(spec: LearnerSpec, predict: PredictFn, optimizer: optax.GradientTransformation,
                         *, tasks_per_batch: int, query_size: int, support_size: int,
                         tasks_per_chunk: int = 0, augment: Callable | None = None,
                         negatives_per_positive: int = 0, mesh: jax.sharding.Mesh | None = None,
                         jit: bool = True) -> Callable:
  """Builds ``step(state, tasks, features) -> (state, metrics)``.

  The batch is drawn inside the step (`make_batch_draw`: from
  ``fold_in(state.rng, state.step)``, with the augmentation and the implicit
  negatives it describes), so a run is a pure function of its initial state
  and a resumed run repeats the same batches. The state argument is donated.

  With a ``mesh`` (one axis, named ``tasks``), the task batch is sharded over
  its devices and everything else is replicated: data parallelism over tasks.
  XLA inserts the all-reduce of the mean meta-gradient. Put the state, tasks
  and features on the mesh with `replicate`; the same code runs on one device.
  """
  draw = make_batch_draw(tasks_per_batch=tasks_per_batch, query_size=query_size, support_size=support_size,
                         augment=augment, negatives_per_positive=negatives_per_positive, mesh=mesh)

  def step(state: MetaTrainState, tasks: TaskSet, features: Features):
    features, batch = draw(state, tasks, features)
    loss, grads, aux = meta_gradient(spec, predict, state.params, features, batch, tasks_per_chunk)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "grad_norm": global_norm(grads), "param_norm": global_norm(params), **aux}
    return MetaTrainState(state.step + 1, params, opt_state, state.rng), metrics

  return jax.jit(step, donate_argnums=(0,)) if jit else step
