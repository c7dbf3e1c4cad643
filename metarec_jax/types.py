"""The types every layer shares: task sets and batches, feature tables, params, the predict protocol.

`data` builds these, `models` and `meta` consume them; keeping them here lets
each of those import the others' vocabulary without importing their code.
"""

from __future__ import annotations

from typing import Any, Protocol

import flax.struct
import jax
import jax.numpy as jnp

Params = Any                   # a model's param pytree
MetaParams = dict[str, Any]    # {"model": Params, ["inner_lr": per-entry rates (Meta-SGD)]}
Support = tuple[jax.Array, jax.Array, jax.Array]  # (items [S], ratings [S], mask [S])


@flax.struct.dataclass
class TaskSet:
  """Padded tasks, one per user.

  Attributes:
    user: ``int32 [T]`` user id of each task.
    items: ``int32 [T, L]`` item ids, 0-padded past ``lengths``.
    ratings: ``float32 [T, L]`` ratings, 0-padded.
    lengths: ``int32 [T]`` number of valid ratings per task.
  """

  user: jax.Array
  items: jax.Array
  ratings: jax.Array
  lengths: jax.Array

  @property
  def num_tasks(self) -> int:
    return int(self.user.shape[0])

  @property
  def max_length(self) -> int:
    return int(self.items.shape[1])

  @property
  def mask(self) -> jax.Array:
    return jnp.arange(self.items.shape[1])[None, :] < self.lengths[:, None]


@flax.struct.dataclass
class TaskBatch:
  """Support and query sets of a batch of tasks (leading axis = task)."""

  user: jax.Array
  support_items: jax.Array
  support_ratings: jax.Array
  support_mask: jax.Array
  query_items: jax.Array
  query_ratings: jax.Array
  query_mask: jax.Array

  @property
  def num_tasks(self) -> int:
    return int(self.user.shape[0])


@flax.struct.dataclass
class Features:
  """Device-resident feature tables: field name -> array indexed by id.

  ``extra`` holds device arrays the step needs that are no model input (the
  implicit path's seen matrix and negative-sampling weights; see
  `data.negatives`); it is empty for ratings.
  """

  user: dict[str, jax.Array]
  item: dict[str, jax.Array]
  extra: dict[str, jax.Array] = flax.struct.field(default_factory=dict)


class PredictFn(Protocol):
  """What the engine calls to score items: ``predict(params, features, user, items, support, loo, capture)``.

  ``user`` is one user id (a scalar), ``items`` an id array ``[N]``;
  ``support`` the task's support set, ``loo`` says the scored items are those
  support items position for position, and ``capture=True`` returns
  ``(scores, inputs)`` with the inputs the fast layers saw.

  Attributes:
    fast_layers: param paths of the layers that take factored inner-loop
      updates (`meta.factored`); empty when none do.
    uses_support: the scores depend on the support set (residual, support
      vector, ridge user vector), so serving cannot cache item features.
  """

  fast_layers: tuple[str, ...]
  uses_support: bool

  def __call__(self, params: Params, features: Features, user: jax.Array, items: jax.Array,
               support: Support | None = None, loo: bool = False, capture: bool = False) -> Any:
    ...


__all__ = ["Params", "MetaParams", "Support", "TaskSet", "TaskBatch", "Features", "PredictFn"]
