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

This is the engine's building block for vectorised seeds; wiring it into
`metarec run` (one checkpoint and selection per member) is the scale issue's
next step.

Measured on the 2-core CPU (MeLU-shaped workload, 32 tasks × (20 + 10), MeLU's
learner; mean of 20 steps after the first call, `python benchmarks/population_step.py`, 2026-12-03):
separate steps / population step, two runs: 3 members 1.00× and 0.96×
(7.4 / 7.4 ms, 8.7 / 9.1 ms), 8 members 0.97× and 0.70×, 1 member 0.41× and
0.42× (the one-member program is 2.4× slower than the plain step). On this CPU one
member already keeps both cores busy, so the population saves no step time;
what it can save (compiles and per-run overheads in a run, idle units of an
accelerator) has not been measured yet.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from metarec_jax.meta.learners import LearnerSpec
from metarec_jax.meta.step import MetaTrainState, init_state, make_meta_train_step
from metarec_jax.types import PredictFn


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
