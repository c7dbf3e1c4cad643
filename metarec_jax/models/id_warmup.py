"""Flax parts of the item-id warm-up methods (MetaEmb, MWUF) and the model that serves them.

A base `RecModel` with ``model.item_id=true`` looks every item up in one id
table; every item unseen in training shares row 0. The warm-up methods
learn, from the item's content fields, the id embedding such an item should
have instead (`methods.id_warmup` has the papers, the losses and the
training). This module holds what prediction needs:

* `content_vectors`: the base model's embeddings of an item's content fields
  (every item field but the derived ``item_id`` / ``item_stats``), frozen,
  with the field values no training item has (never-trained rows) read as
  missing;
* `MetaEmbNet` (``ē + MLP(content)``) and `MWUFNet`
  (``(1 + scale(content)) ⊙ ē + shift(user vector)``): the id embedding of
  an unknown item from its content;
* `WarmedModel` and `make_warmed_predict`: the base model in which every
  item whose id is 0 gets its own generated row, every known item its own
  trained row (so a known item's score never depends on the warm-up params).

The generated rows are appended to the id table and the unknown items' ids
point at them (a widened copy of the base model accepts the longer table),
so the base model's own code scores, adapts and serves unchanged, with
task-local tables, factored updates and the support-set paths of `RecModel`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.derived import DERIVED_ITEM_FIELDS
from metarec_jax.data.interactions import FieldSpec
from metarec_jax.models.extractor import FieldEmbedding
from metarec_jax.models.model import Predict, make_predict
from metarec_jax.types import Features, Params

KEY = "warmup"        # the warm-up params' key in the model params (never adapted in the inner loop)
ID_FIELD = "item_id"  # the derived item-id field (`data.derived`)


# --------------------------------------------------------------------------- the base model's id table and content


def content_specs(model: Any) -> tuple[FieldSpec, ...]:
  """The item fields a generator reads: every item field of ``model`` but the derived ones."""
  return tuple(s for s in model.item_specs if s.name not in DERIVED_ITEM_FIELDS)


def content_vectors(model: Any, params: Params, item_cols: dict[str, jax.Array],
                    known: dict[str, Any] | None = None) -> jax.Array:
  """The base model's embeddings of the items' content fields, concatenated, gradients stopped.

  Args:
    model: the base `RecModel` (extractor ``fields``).
    params: its params (``extractor/item/<field>`` are read).
    item_cols: item columns ``[..., N]`` (content fields and ``item_id``).
    known: field -> ``bool [vocab]``, the ids that occur among the training
      items (`known_ids`). The others were never trained (their rows are
      the random initialisation) and read as missing: a multi-hot field
      leaves them out of its mean, a categorical field gives zeros.

  Returns:
    ``[..., N, C]`` float32 (``C = 0`` when the items have no content field).
  """
  specs = content_specs(model)
  ids = item_cols[ID_FIELD]
  if not specs:
    return jnp.zeros(ids.shape + (0,), jnp.float32)
  known = known or {}
  cols, factors = {}, []
  for s in specs:
    col, seen = item_cols[s.name], known.get(s.name)
    factor = jnp.ones(ids.shape, jnp.float32)
    if seen is not None and s.kind == "multi":
      col = jnp.where(jnp.asarray(seen)[col], col, 0)
    elif seen is not None and s.kind == "categorical":
      factor = jnp.asarray(seen)[col].astype(jnp.float32)
    cols[s.name] = col
    factors.append(factor)
  sub = {s.name: params["extractor"]["item"][s.name] for s in specs}
  out = FieldEmbedding(specs, model.embed_dim).apply({"params": sub}, cols).astype(jnp.float32)
  out = out.reshape(out.shape[:-1] + (len(specs), -1)) * jnp.stack(factors, -1)[..., None]
  return jax.lax.stop_gradient(out.reshape(out.shape[:-2] + (-1,)))


def known_ids(model: Any, item_columns: dict[str, Any], items: Any) -> dict[str, np.ndarray]:
  """Per categorical / multi-hot content field, ``bool [vocab]``: the ids that occur among ``items``."""
  out = {}
  for s in content_specs(model):
    if s.kind in ("categorical", "multi"):
      seen = np.zeros(int(s.vocab_size), bool)
      seen[np.asarray(item_columns[s.name])[np.asarray(items)].ravel()] = True
      if s.kind == "multi":
        seen[0] = False  # padding
      out[s.name] = seen
  return out


def content_width(model: Any) -> int:
  """``C`` of `content_vectors`."""
  return len(content_specs(model)) * int(model.embed_dim)


def id_table(params: Params) -> jax.Array:
  """The item-id embedding table ``[rows, D]`` of a base model's params."""
  return params["extractor"]["item"][ID_FIELD]["embedding"]


def with_id_table(params: Params, table: jax.Array) -> Params:
  """``params`` with the item-id table replaced (nothing else is copied)."""
  ext = params["extractor"]
  item = ext["item"]
  return {**params, "extractor": {**ext, "item": {**item, ID_FIELD: {**item[ID_FIELD], "embedding": table}}}}


def user_vectors(model: Any, params: Params, user_cols: dict[str, jax.Array]) -> jax.Array:
  """The base extractor's user feature vectors ``[..., Du]`` (gradients stopped)."""
  extractor = model.make_extractor(parent=None)
  out = extractor.apply({"params": params["extractor"]}, user_cols, method="embed_user")
  return jax.lax.stop_gradient(out.astype(jnp.float32))


def widened(model: Any, rows: int) -> Any:
  """A copy of ``model`` whose item-id field accepts a table of ``rows`` rows."""
  specs = tuple(dataclasses.replace(s, vocab_size=max(int(s.vocab_size), rows)) if s.name == ID_FIELD else s
                for s in model.item_specs)
  return model.clone(item_specs=specs)


# --------------------------------------------------------------------------- the warm-up networks


class MLP(nn.Module):
  """ReLU hidden layers, then a linear layer whose kernel starts at zero (the output starts at its bias, 0)."""

  hidden: Sequence[int]
  out: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, size in enumerate(self.hidden):
      x = nn.relu(nn.Dense(size, name=f"dense_{i}")(x))
    return nn.Dense(self.out, kernel_init=nn.initializers.zeros, name="out")(x)


@dataclasses.dataclass(frozen=True)
class MetaEmbNet:
  """MetaEmb's generator ``g(content) = ē + MLP(content)``.

  Params ``{"net": MLP params, "mean": ē [D]}``; ``ē`` is the mean id
  embedding of the training items, a constant (its gradient is stopped).

  Attributes:
    hidden: hidden sizes of the MLP.
    dim: the id embedding width ``D``.
  """

  hidden: tuple[int, ...]
  dim: int

  def init(self, key: jax.Array, content_dim: int, mean: jax.Array) -> Params:
    net = MLP(self.hidden, self.dim).init(key, jnp.zeros((1, content_dim)))["params"]
    return {"net": net, "mean": jnp.asarray(mean, jnp.float32)}

  def cold_embedding(self, params: Params, content: jax.Array) -> jax.Array:
    """The generated id embedding ``[..., D]`` of items with content ``[..., C]``."""
    return jax.lax.stop_gradient(params["mean"]) + MLP(self.hidden, self.dim).apply({"params": params["net"]}, content)


@dataclasses.dataclass(frozen=True)
class MWUFNet:
  """MWUF's meta networks: ``warm = (1 + scale(content)) ⊙ cold + shift(user vector)``.

  Serving params ``{"scale", "shift": MLP params, "default": d [Du], "mean":
  ē [D]}``: an item without recorded interactions has the cold embedding
  ``ē`` (the mean training-item embedding) and the shift input ``d`` (a
  learned vector standing in for the mean of its users' vectors).

  Attributes:
    hidden: hidden sizes of both networks.
    dim: the id embedding width ``D``.
  """

  hidden: tuple[int, ...]
  dim: int

  def init(self, key: jax.Array, content_dim: int, user_dim: int, mean: jax.Array, default: jax.Array) -> Params:
    k_scale, k_shift = jax.random.split(key)
    mlp = MLP(self.hidden, self.dim)
    return {"scale": mlp.init(k_scale, jnp.zeros((1, content_dim)))["params"],
            "shift": mlp.init(k_shift, jnp.zeros((1, user_dim)))["params"],
            "default": jnp.asarray(default, jnp.float32), "mean": jnp.asarray(mean, jnp.float32)}

  def warm(self, params: Params, content: jax.Array, cold: jax.Array, users: jax.Array) -> jax.Array:
    """``(1 + scale(content)) ⊙ cold + shift(users)`` (broadcast over leading axes)."""
    mlp = MLP(self.hidden, self.dim)
    scale = mlp.apply({"params": params["scale"]}, content)
    shift = mlp.apply({"params": params["shift"]}, users)
    return (1.0 + scale) * cold + shift

  def cold_embedding(self, params: Params, content: jax.Array) -> jax.Array:
    """The warm embedding ``[..., D]`` of items without recorded interactions, content ``[..., C]``."""
    return self.warm(params, content, jax.lax.stop_gradient(params["mean"]), params["default"])


# --------------------------------------------------------------------------- the served model


@dataclasses.dataclass(frozen=True, eq=False)
class WarmedModel:
  """A base `RecModel` whose unknown items (id 0) get generated id embeddings; called like one by serving.

  The params are the base model's plus ``params[KEY]`` (the warm-up
  network's). Everything else — the head, the inner loop, the support-set
  paths — is the base model's.

  Attributes:
    base: the base `RecModel` (``model.item_id=true``, extractor ``fields``).
    net: `MetaEmbNet` or `MWUFNet` (anything with ``cold_embedding(params, content)``).
    residual: the base predicts residuals (``model.residual``).
    bias_reg: the base's user-bias shrinkage.
    known: `known_ids` of the training items (None: every content id is read).
  """

  base: Any
  net: Any
  residual: bool = False
  bias_reg: float = 5.0
  known: dict | None = None

  # What serving and the engine read of a model (as `RecModel` answers it).

  @property
  def user_specs(self):
    return self.base.user_specs

  @property
  def item_specs(self):
    return self.base.item_specs

  @property
  def offset(self) -> float:
    return self.base.offset

  @property
  def dtype(self):
    return self.base.dtype

  @property
  def support_vector(self) -> bool:
    return self.base.support_vector

  @property
  def ridge_dim(self) -> int:
    return self.base.ridge_dim

  def fast_layers(self) -> tuple[str, ...]:
    return tuple(self.base.fast_layers())

  def item_side(self, path: str) -> bool:
    return path.startswith(KEY + "/") or self.base.item_side(path)

  def score_features(self, params: Params, f_u: jax.Array, f_i: jax.Array) -> jax.Array:
    return self.base.score_features(params, f_u, f_i)

  def embed(self, params: Params, user_cols: dict[str, jax.Array],
            item_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    model, p, cols = self.extend(params, item_cols)
    return model.embed(p, user_cols, cols)

  def extend(self, params: Params, item_cols: dict[str, jax.Array]) -> tuple[Any, Params, dict[str, jax.Array]]:
    """``(widened base model, base params, item columns)`` in which each unknown item has its own row.

    The generated rows of the items of ``item_cols`` (shape ``[..., N]``)
    are appended to the id table and each unknown item's id points at its
    row; known ids are left alone.
    """
    base_params = {k: v for k, v in params.items() if k != KEY}
    ids = item_cols[ID_FIELD]
    table = id_table(base_params)
    n, rows = int(ids.size), int(table.shape[0])
    gen = self.net.cold_embedding(params[KEY], content_vectors(self.base, base_params, item_cols, self.known))
    new_ids = jnp.where(ids == 0, rows + jnp.arange(n, dtype=ids.dtype).reshape(ids.shape), ids)
    table = jnp.concatenate([table, gen.reshape(n, -1).astype(table.dtype)])
    return widened(self.base, rows + n), with_id_table(base_params, table), {**item_cols, ID_FIELD: new_ids}


def make_warmed_predict(model: WarmedModel) -> Predict:
  """The engine's predict function of a `WarmedModel` (see `models.model.make_predict`).

  Each call generates the id rows of the unknown items of the feature table
  it is given (global, or a task's local columns), then scores with the
  base model's own predict function.
  """
  base = make_predict(model.base, residual=model.residual, bias_reg=model.bias_reg)

  def fn(params: Params, features: Features, user, items, support=None, loo=False, capture=False):
    wide, p, cols = model.extend(params, features.item)
    predict = make_predict(wide, residual=model.residual, bias_reg=model.bias_reg)
    return predict(p, features.replace(item=cols), user, items, support, loo, capture)

  return Predict(fn, fast_layers=base.fast_layers, uses_support=base.uses_support)


def exclude_warmup(pattern: str) -> str:
  """An adapt filter matching what ``pattern`` matches except the warm-up params (`KEY`)."""
  from metarec_jax.meta.inner import adapt_pattern
  return f"^(?!{KEY}/)(?=.*?(?:{adapt_pattern(pattern)}))"


__all__ = ["KEY", "ID_FIELD", "content_specs", "content_vectors", "known_ids", "content_width", "id_table",
           "with_id_table", "user_vectors", "widened", "MLP", "MetaEmbNet", "MWUFNet", "WarmedModel",
           "make_warmed_predict", "exclude_warmup"]
