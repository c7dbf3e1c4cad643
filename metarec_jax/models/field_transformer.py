"""A transformer over feature fields (FT-Transformer style) as the feature extractor.

Each field of an entity becomes one token of width ``dim``: a categorical id
looks up a vector, a multi-hot list averages the vectors of its ids over the
mask, a dense vector goes through a linear map; every field adds its own
learned bias (FT-Transformer's per-feature bias). A ``[CLS]`` token is
prepended, ``depth`` pre-norm transformer blocks (multi-head self-attention,
GELU feed-forward) mix the tokens, and the final LayerNorm'd ``[CLS]`` token
(``pool="cls"``) or the masked mean of the field tokens (``pool="mean"``),
optionally projected to ``out_dim``, is the feature vector.

A multi-hot field with no id at all is masked out (as a key and from the mean
pool), so the output never depends on padding: not on the padded width of a
list, not on the padding ids, not on the params of a field that is empty.

`FieldTransformerExtractor` has the interface of `extractor.Extractor`
(``embed_user``, ``embed_items``, ``__call__ -> (f_u, f_i)``), one tower per
entity kind. Sizes go from `SIZES["tiny"]` (CPU tests) to `SIZES["xl"]`
(about 300M params per tower, for accelerators, with ``remat=True`` and
``dtype=jnp.bfloat16``; params stay float32).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.data.interactions import FieldSpec

# name -> (dim, depth, heads, mlp_ratio); parameters per tower ~ depth * (4 + 2 * mlp_ratio) * dim^2.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "tiny": (8, 1, 2, 2),        # ~1K params per tower: tests
    "small": (32, 2, 4, 2),      # ~16K: CPU experiments
    "base": (128, 4, 8, 4),      # ~0.8M
    "large": (512, 12, 8, 4),    # ~38M
    "xl": (1024, 24, 16, 4),     # ~302M: accelerators, remat + bfloat16
}
POOLS = ("cls", "mean")


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
  """The shape of each tower (hashable, so it can be a Flax module attribute).

  Attributes:
    dim: token width.
    depth: transformer blocks.
    heads: attention heads (must divide ``dim``).
    mlp_ratio: feed-forward width / ``dim``.
    out_dim: width of a final linear projection of the pooled vector (0: none).
    pool: ``cls`` or ``mean``.
    remat: rematerialise each block in the backward pass (memory for compute).
  """

  dim: int = 32
  depth: int = 2
  heads: int = 4
  mlp_ratio: int = 2
  out_dim: int = 0
  pool: str = "cls"
  remat: bool = False

  @classmethod
  def named(cls, size: str, **overrides) -> "TransformerSpec":
    """A preset of `SIZES` with some fields overridden."""
    if size not in SIZES:
      raise ValueError(f"unknown transformer size {size!r}; known: {sorted(SIZES)}")
    dim, depth, heads, ratio = SIZES[size]
    return cls(**{**dict(dim=dim, depth=depth, heads=heads, mlp_ratio=ratio), **overrides})

  @classmethod
  def from_config(cls, cfg: Any) -> "TransformerSpec":
    """From ``config.model.transformer`` (``size`` names a preset; its ``dim``, ``depth``,
    ``heads``, ``mlp_ratio`` are then ignored)."""
    rest = dict(out_dim=int(cfg.out_dim), pool=str(cfg.pool), remat=bool(cfg.remat))
    if cfg.get("size", ""):
      return cls.named(cfg.size, **rest)
    return cls(dim=int(cfg.dim), depth=int(cfg.depth), heads=int(cfg.heads), mlp_ratio=int(cfg.mlp_ratio), **rest)

  def check(self) -> None:
    if self.dim < 1 or self.depth < 0 or self.heads < 1 or self.mlp_ratio < 1 or self.out_dim < 0:
      raise ValueError(f"transformer: dim, heads, mlp_ratio must be >= 1, depth, out_dim >= 0: {self}")
    if self.dim % self.heads:
      raise ValueError(f"transformer: heads={self.heads} must divide dim={self.dim}")
    if self.pool not in POOLS:
      raise ValueError(f"transformer: pool {self.pool!r} unknown; choose one of {POOLS}")


class FieldTokenizer(nn.Module):
  """One token per field, and a mask saying which fields hold a value.

  Attributes:
    specs: the fields, in order.
    dim: token width.
    dtype: compute dtype.
  """

  specs: Sequence[FieldSpec]
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, columns: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """``(tokens [..., F, dim], mask [..., F] bool)``."""
    tokens, masks = [], []
    for spec in self.specs:
      x = columns[spec.name]
      if spec.kind == "categorical":
        tok = nn.Embed(spec.vocab_size, self.dim, dtype=self.dtype, name=spec.name)(x)
        present = jnp.ones(x.shape, bool)
      elif spec.kind == "multi":
        vecs = nn.Embed(spec.vocab_size, self.dim, dtype=self.dtype, name=spec.name)(x)
        valid = x > 0
        m = valid[..., None].astype(vecs.dtype)
        tok = (vecs * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)
        present = valid.any(-1)
      elif spec.kind == "dense":
        tok = nn.Dense(self.dim, dtype=self.dtype, name=spec.name)(x.astype(jnp.float32))
        present = jnp.ones(x.shape[:-1], bool)
      else:
        raise ValueError(f"field {spec.name!r}: unknown kind {spec.kind!r}")
      tokens.append(tok)
      masks.append(present)
    bias = self.param("field_bias", nn.initializers.normal(0.02), (len(self.specs), self.dim))
    tokens = jnp.stack(tokens, axis=-2) + bias.astype(self.dtype)
    mask = jnp.stack(masks, axis=-1)
    return jnp.where(mask[..., None], tokens, 0).astype(self.dtype), mask


class Block(nn.Module):
  """Pre-norm transformer block: ``x + MHA(LN(x))``, then ``x + FFN(LN(x))``."""

  dim: int
  heads: int
  mlp_ratio: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    h = nn.LayerNorm(dtype=self.dtype, name="norm_attention")(x)
    attn_mask = mask[..., None, None, :]  # keys only: [..., 1 head, 1 query, K]
    h = nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.dim, out_features=self.dim,
                                        dtype=self.dtype, deterministic=True, force_fp32_for_softmax=True,
                                        name="attention")(h, h, mask=attn_mask)
    x = x + h
    h = nn.LayerNorm(dtype=self.dtype, name="norm_mlp")(x)
    h = nn.gelu(nn.Dense(self.dim * self.mlp_ratio, dtype=self.dtype, name="mlp_in")(h))
    return x + nn.Dense(self.dim, dtype=self.dtype, name="mlp_out")(h)


class FieldTransformer(nn.Module):
  """Fields of one entity kind -> tokens -> transformer -> pooled feature vector.

  Attributes:
    specs: the fields.
    spec: the tower's shape.
    dtype: compute dtype (params float32).
  """

  specs: Sequence[FieldSpec]
  spec: TransformerSpec = TransformerSpec()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, columns: dict[str, jax.Array]) -> jax.Array:
    s = self.spec
    s.check()
    tokens, mask = FieldTokenizer(self.specs, s.dim, self.dtype, name="tokens")(columns)
    cls = self.param("cls", nn.initializers.normal(0.02), (s.dim,))
    cls = jnp.broadcast_to(cls.astype(self.dtype), tokens.shape[:-2] + (1, s.dim))
    x = jnp.concatenate([cls, tokens], axis=-2)
    full_mask = jnp.concatenate([jnp.ones(mask.shape[:-1] + (1,), bool), mask], axis=-1)
    block = nn.remat(Block) if s.remat else Block
    for i in range(s.depth):
      x = block(s.dim, s.heads, s.mlp_ratio, self.dtype, name=f"block_{i}")(x, full_mask)
    x = nn.LayerNorm(dtype=self.dtype, name="norm_out")(x)
    if s.pool == "cls":
      out = x[..., 0, :]
    else:
      m = mask[..., None].astype(x.dtype)
      out = (x[..., 1:, :] * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)
    if s.out_dim:
      out = nn.Dense(s.out_dim, dtype=self.dtype, name="out")(out)
    return out


class FieldTransformerExtractor(nn.Module):
  """User and item towers, each a `FieldTransformer`; swaps in for `extractor.Extractor`.

  Attributes:
    user_specs: user fields.
    item_specs: item fields.
    spec: the shape of both towers.
    dtype: compute dtype (params stay float32), e.g. ``jnp.bfloat16``.
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  spec: TransformerSpec = TransformerSpec()
  dtype: Any = jnp.float32

  def setup(self):
    self.user = FieldTransformer(self.user_specs, self.spec, self.dtype)
    self.item = FieldTransformer(self.item_specs, self.spec, self.dtype)

  def embed_items(self, item_cols: dict[str, jax.Array]) -> jax.Array:
    """Item feature vectors ``[..., Di]``."""
    return self.item(item_cols)

  def embed_user(self, user_cols: dict[str, jax.Array]) -> jax.Array:
    """The user feature vector ``[..., Du]``."""
    return self.user(user_cols)

  def __call__(self, user_cols: dict[str, jax.Array],
               item_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    return self.embed_user(user_cols), self.embed_items(item_cols)


def count_params(params: Any) -> int:
  """Number of scalars in a param tree."""
  return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
