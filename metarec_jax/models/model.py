"""The recommender: extractor + head, and the pure predict function."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.tasks import Features
from metarec_jax.models.extractor import Extractor
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead

Params = Any
PredictFn = Callable[[Params, Features, jax.Array, jax.Array], jax.Array]

HEADS = ("mlp", "relation", "dot")


class RecModel(nn.Module):
  """Scores items for a user: ``head(extractor(user fields, item fields))``.

  Attributes:
    user_specs: user fields fed to the extractor.
    item_specs: item fields fed to the extractor.
    embed_dim: embedding width per field.
    user_mlp: user tower MLP sizes.
    item_mlp: item tower MLP sizes.
    head: ``mlp``, ``relation`` or ``dot``.
    head_hidden: hidden sizes of the MLP head.
    offset: initial global bias (mean training rating).
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  embed_dim: int = 32
  user_mlp: Sequence[int] = ()
  item_mlp: Sequence[int] = ()
  head: str = "mlp"
  head_hidden: Sequence[int] = (64, 64)
  offset: float = 0.0

  @nn.compact
  def __call__(self, user_cols: dict[str, jax.Array], item_cols: dict[str, jax.Array]) -> jax.Array:
    f_u, f_i = Extractor(self.user_specs, self.item_specs, self.embed_dim, self.user_mlp,
                         self.item_mlp, name="extractor")(user_cols, item_cols)
    if self.head == "mlp":
      head = MLPHead(self.head_hidden, self.offset, name="head")
    elif self.head == "relation":
      head = RelationHead(self.offset, name="head")
    elif self.head == "dot":
      head = DotHead(self.offset, name="head")
    else:
      raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")
    return head(f_u, f_i)


def make_predict(model: RecModel) -> PredictFn:
  """Returns ``predict(params, features, user, items) -> scores``.

  ``user`` is one user id (a scalar) and ``items`` an id array ``[N]``; the
  feature columns are gathered from the device-resident tables inside the
  traced function, so no per-example tensor is ever built on the host.
  """

  def predict(params: Params, features: Features, user: jax.Array, items: jax.Array) -> jax.Array:
    user_cols = {k: features.user[k][user] for k in (s.name for s in model.user_specs)}
    item_cols = {k: features.item[k][items] for k in (s.name for s in model.item_specs)}
    return model.apply({"params": params}, user_cols, item_cols)

  return predict


def init_params(model: RecModel, features: Features, key: jax.Array) -> Params:
  """Initialises the model's params on one dummy (user, 2 items) example."""
  user_cols = {s.name: features.user[s.name][0] for s in model.user_specs}
  item_cols = {s.name: features.item[s.name][jnp.zeros((2,), jnp.int32)] for s in model.item_specs}
  return jax.jit(model.init)(key, user_cols, item_cols)["params"]
