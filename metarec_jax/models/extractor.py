"""Feature extractor: field embeddings (single and multi-hot) -> feature vectors."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.models import text


class Embed(nn.Module):
  """An embedding table (``nn.Embed``'s init, param path and lookup).

  Unlike ``nn.Embed`` it accepts a table with fewer rows than
  ``num_embeddings`` at apply time: the task-local tables of
  `metarec_jax.meta.local` hold only the rows a task uses, indexed locally.
  """

  num_embeddings: int
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, ids: jax.Array) -> jax.Array:
    if self.has_variable("params", "embedding"):
      table = self.get_variable("params", "embedding")
      if table.ndim != 2 or table.shape[1] != self.features or table.shape[0] > self.num_embeddings:
        raise ValueError(f"embedding {self.name!r}: table of shape {table.shape} does not fit "
                         f"({self.num_embeddings}, {self.features})")
    else:
      table = self.param("embedding", nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0),
                         (self.num_embeddings, self.features), jnp.float32)
    out = jnp.take(table, ids, axis=0)
    return out.astype(self.dtype) if self.dtype is not None else out


class TokensEmbedding(nn.Module):
  """A ``tokens`` field: the sentence encoder of its `text.EncoderSpec`, then a linear map to ``dim``.

  The ids' mask is ``ids > 0`` (0 is padding). The encoder's unit-norm
  sentence vector is scaled by ``sqrt(hidden)`` (unit-variance entries, like
  the cached ``text_emb`` field) before the map. Params: ``text_encoder/...``
  (the `text.SentenceEncoder`'s, loaded from the pretrained files by
  `models.model.init_params`) and ``proj``. With ``finetune=frozen`` no
  gradient enters the encoder.

  Attributes:
    spec: the encoder's files, shape and fine-tuning.
    dim: output width.
    dtype: the model's compute dtype (the encoder's unless ``spec.dtype`` says otherwise).
  """

  spec: text.EncoderSpec
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, ids: jax.Array) -> jax.Array:
    vec = self.spec.module(self.dtype, name=text.ENCODER)(ids, ids > 0)
    if self.spec.finetune == "frozen":
      vec = jax.lax.stop_gradient(vec)
    vec = vec * jnp.sqrt(jnp.float32(self.spec.config.hidden_size))
    return nn.Dense(self.dim, dtype=self.dtype, name="proj")(vec)


class FieldEmbedding(nn.Module):
  """Embeds every field of one entity kind and concatenates the results.

  Categorical fields look up one vector; multi-hot fields (0 = padding) average
  the vectors of their ids over the mask; dense fields go through a linear map;
  tokens fields go through their sentence encoder (`TokensEmbedding`).

  Attributes:
    specs: the fields, in order.
    dim: embedding width per field.
  """

  specs: Sequence[FieldSpec]
  dim: int
  dtype: Any = None

  @nn.compact
  def __call__(self, columns: dict[str, jax.Array]) -> jax.Array:
    parts = []
    for spec in self.specs:
      x = columns[spec.name]
      if spec.kind == "categorical":
        parts.append(Embed(spec.vocab_size, self.dim, dtype=self.dtype, name=spec.name)(x))
      elif spec.kind == "multi":
        vecs = Embed(spec.vocab_size, self.dim, dtype=self.dtype, name=spec.name)(x)
        mask = (x > 0)[..., None].astype(vecs.dtype)
        parts.append((vecs * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0))
      elif spec.kind == "dense":
        x = x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)
        parts.append(nn.Dense(self.dim, dtype=self.dtype, name=spec.name)(x))
      elif spec.kind == "tokens":
        parts.append(TokensEmbedding(spec.encoder, self.dim, dtype=self.dtype, name=spec.name)(x))
      else:
        raise ValueError(f"field {spec.name!r}: unknown kind {spec.kind!r}")
    return jnp.concatenate(parts, axis=-1)


class MLP(nn.Module):
  """ReLU layers; the last layer is linear when ``final_activation`` is False."""

  sizes: Sequence[int]
  final_activation: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, size in enumerate(self.sizes):
      x = nn.Dense(size, dtype=self.dtype, name=f"dense_{i}")(x)
      if i < len(self.sizes) - 1 or self.final_activation:
        x = nn.relu(x)
    return x


class Extractor(nn.Module):
  """User and item towers: field embeddings, then an optional MLP each.

  Attributes:
    user_specs: user fields.
    item_specs: item fields.
    embed_dim: embedding width per field.
    user_mlp: hidden sizes of the user MLP (empty: the concatenated embeddings).
    item_mlp: hidden sizes of the item MLP.
    dtype: compute dtype (params stay float32), e.g. ``jnp.bfloat16``.
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  embed_dim: int = 32
  user_mlp: Sequence[int] = ()
  item_mlp: Sequence[int] = ()
  dtype: Any = None

  def setup(self):
    self.user = FieldEmbedding(self.user_specs, self.embed_dim, self.dtype)
    self.item = FieldEmbedding(self.item_specs, self.embed_dim, self.dtype)
    if self.user_mlp:
      self.user_tower = MLP(self.user_mlp, dtype=self.dtype)
    if self.item_mlp:
      self.item_tower = MLP(self.item_mlp, dtype=self.dtype)

  def embed_items(self, item_cols: dict[str, jax.Array]) -> jax.Array:
    """Item feature vectors ``[..., Di]`` (shared by scored and support items)."""
    f_i = self.item(item_cols)
    return self.item_tower(f_i) if self.item_mlp else f_i

  def embed_user(self, user_cols: dict[str, jax.Array]) -> jax.Array:
    f_u = self.user(user_cols)
    return self.user_tower(f_u) if self.user_mlp else f_u

  def __call__(self, user_cols: dict[str, jax.Array],
               item_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    return self.embed_user(user_cols), self.embed_items(item_cols)
