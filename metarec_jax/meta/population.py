"""Population training: N meta-training runs (seeds, initialisations) as one jitted program.

The engine's step (`meta.step.make_meta_train_step`) is a pure function of
its state, so ``jax.vmap`` over a stacked population of states trains N
models with one compile: each member draws its own batches from its own
``rng`` and takes its own optimizer update, exactly as a separate run with
that state would (tested to float tolerance: vmapped matmuls may sum in a
different order). The task set and the features are shared.

    states = init_population([params_0, params_1, params_2], optimizer, keys)
    step = make_population_step(spec, predict, optimizer, tasks_per_batch=32, query_size=10, support_size=20)
    for _ in range(steps):
      states, metrics = step(states, tasks, features)     # metrics["loss"]: [N]
    member_1 = population_member(states, 1)               # a plain MetaTrainState

When the members also differ in their data (each seed has its own split:
its own task set and derived feature columns) or in scalars a step is built
from (the mean training rating a model starts from), `make_member_step`
vmaps a step *built inside the trace* from per-member arguments over
stacked tasks and features (`stack_members`, `pad_task_length`):
`metarec run --vectorize` trains a method's seeds this way
(`train.population.train_population`, `methods.learned.train_population_model`).

Measured on the 2-core CPU (MeLU-shaped workload, 32 tasks × (20 + 10), MeLU's
learner; mean of 20 steps after the first call, `python benchmarks/population_step.py`, 2026-12-03):
separate steps / population step, two runs: 3 members 1.00× and 0.96×
(7.4 / 7.4 ms, 8.7 / 9.1 ms), 8 members 0.97× and 0.70×, 1 member 0.41× and
0.42×; a third run with the timing code moved to `bench.population`: 1.18×,
0.89× and 1.04× (so the one-member slowdown of the first two runs did not
repeat; on this shared machine differences under ~1.5× are noise). On this
CPU one member already keeps both cores busy, so the population saves no
step time.
A whole run saves none either: ``metarec run experiments/melu_ml1m.py --seeds 3
--set methods=melu1,maml,melu_ridge`` took 11 min 58 s seed by seed and 12 min
17 s with ``--vectorize`` (2026-12-03). Over 1,000 steps the members' float
rounding differences (vmapped kernels sum in another order) grow into
different trajectories: equal in distribution, not in digits (README,
"Seeds and rates in one program"). What it can save on an accelerator (the
idle units one member leaves) awaits a lent GPU.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from metarec_jax.meta.learners import LearnerSpec
from metarec_jax.meta.step import MetaTrainState, init_state, make_meta_train_step
from metarec_jax.types import PredictFn, TaskSet


def init_population(params: Sequence[Any], optimizer: optax.GradientTransformation,
                    rngs: Sequence[jax.Array] | jax.Array) -> MetaTrainState:
  """A stacked population of fresh states: member ``i`` is `init_state(params[i], optimizer, rngs[i])`.

  Args:
    params: one meta-param tree per member (same structure and shapes).
    optimizer: the outer optimizer every member uses.
    rngs: one PRNG key per member (a sequence, or a stacked ``[N, 2]`` array).

  Raises:
    ValueError: no members, or as many keys as members.
  """
  rngs = list(rngs) if not isinstance(rngs, jax.Array) else [rngs[i] for i in range(rngs.shape[0])]
  if not params or len(params) != len(rngs):
    raise ValueError(f"a population needs one PRNG key per member and at least one member; got "
                     f"{len(params)} param trees and {len(rngs)} keys")
  states = [init_state(p, optimizer, k) for p, k in zip(params, rngs)]
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def population_size(states: MetaTrainState) -> int:
  """Number of members of a stacked population."""
  return int(states.step.shape[0])


def population_member(states: MetaTrainState, i: int) -> MetaTrainState:
  """Member ``i`` of a stacked population, as a plain state (checkpointing, evaluation, serving)."""
  return jax.tree_util.tree_map(lambda x: x[i], states)


def make_population_step(spec: LearnerSpec, predict: PredictFn, optimizer: optax.GradientTransformation,
                         **step_kwargs) -> Callable:
  """``step(states, tasks, features) -> (states, metrics)``: the engine's step vmapped over the members.

  ``step_kwargs`` are `make_meta_train_step`'s (``tasks_per_batch``,
  ``query_size``, ``support_size``, ``tasks_per_chunk``, ``augment``,
  ``negatives_per_positive``); every metric gets a leading member axis. The
  states are donated.

  Raises:
    ValueError: a ``mesh`` or ``jit`` argument (the population is one program
      on one device here; sharding members over devices is not built yet).
  """
  for key in ("mesh", "jit"):
    if key in step_kwargs:
      raise ValueError(f"make_population_step takes no {key!r}: the population runs as one jitted program")
  step = make_meta_train_step(spec, predict, optimizer, jit=False, **step_kwargs)
  return jax.jit(jax.vmap(step, in_axes=(0, None, None)), donate_argnums=(0,))


class PopulationMismatch(ValueError):
  """The members' data differ in structure or shape, so they cannot be stacked into one program."""


def make_member_step(member_step: Callable) -> Callable:
  """``step(states, tasks, features, *args)``: ``member_step`` vmapped over a leading member axis of every argument.

  ``member_step(state, tasks, features, *args) -> (state, metrics)`` may
  build its step from its arguments inside the trace (per-member scalars such
  as a model's starting offset are then traced values, so one program serves
  members whose steps differ only in those values). The states are donated.
  """
  return jax.jit(jax.vmap(member_step), donate_argnums=(0,))


def pad_task_length(tasks: TaskSet, length: int) -> TaskSet:
  """``tasks`` padded to ``length`` ratings per task (padding never changes a task's splits: `data.tasks`).

  Raises:
    ValueError: ``length`` is shorter than the task set's padded length.
  """
  extra = length - tasks.items.shape[1]
  if extra < 0:
    raise ValueError(f"cannot pad tasks of length {tasks.items.shape[1]} to {length}")
  if extra == 0:
    return tasks
  pad = lambda x: jnp.pad(x, ((0, 0), (0, extra)))
  return tasks.replace(items=pad(tasks.items), ratings=pad(tasks.ratings))


def stack_members(trees: Sequence[Any], what: str) -> Any:
  """One tree with a leading member axis from the members' trees (same structure, shapes and dtypes).

  Args:
    trees: one tree per member.
    what: what the trees are, for the error message (``"task sets"``).

  Raises:
    PopulationMismatch: the trees differ in structure, or a leaf differs in
      shape or dtype (the message names the leaf and the members' shapes).
  """
  structures = {jax.tree_util.tree_structure(t) for t in trees}
  if len(structures) != 1:
    raise PopulationMismatch(f"the members' {what} differ in structure; a population needs identical structures")
  flat = [jax.tree_util.tree_flatten_with_path(t)[0] for t in trees]
  for leaves in zip(*flat):
    shapes = [(tuple(x.shape), str(x.dtype)) for _, x in leaves]
    if len(set(shapes)) != 1:
      raise PopulationMismatch(f"the members' {what} differ at {jax.tree_util.keystr(leaves[0][0])}: "
                       + ", ".join(f"member {i} {shape} {dtype}" for i, (shape, dtype) in enumerate(shapes)))
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)
