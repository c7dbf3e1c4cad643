"""The recommender: extractor + head, and the pure predict function."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.data.tasks import Features
from metarec_jax.models.extractor import Extractor
from metarec_jax.models.heads import DotHead, MLPHead, RelationHead, per_item
from metarec_jax.models.ridge import RidgeUserVector

Params = Any
PredictFn = Callable[..., jax.Array]  # (params, features, user, items, support=None, loo=False)

HEADS = ("mlp", "relation", "dot")


class RecModel(nn.Module):
  """Scores items for a user: ``head(extractor(user fields, item fields))``.

  Optionally the user side also gets a support-set vector (``support_vector``):
  the mean of the support items' feature vectors weighted by their residual
  ratings (FISM-like, amortised), computed leave-one-out when the scored items
  are the support items themselves, so a support rating never predicts itself.
  With ``ridge_dim`` the score also gets a closed-form user vector: a ridge
  solution over learned item factors of the support residuals
  (`ridge.RidgeUserVector`, leave-one-out on the support items too).

  Attributes:
    user_specs: user fields fed to the extractor.
    item_specs: item fields fed to the extractor.
    embed_dim: embedding width per field.
    user_mlp: user tower MLP sizes.
    item_mlp: item tower MLP sizes.
    head: ``mlp``, ``relation`` or ``dot``.
    head_hidden: hidden sizes of the MLP head.
    offset: initial global bias (mean training rating; 0 for residual models).
    support_vector: add the support-set user vector to the user features.
    ridge_dim: > 0 adds the ridge user vector's score with this many item
      factors (plus an intercept, the user bias).
    ridge_reg: initial ridge penalty of every factor.
    extractor: ``fields`` (`Extractor`) or ``transformer``
      (`field_transformer.FieldTransformerExtractor`, shaped by ``transformer``).
    dtype: compute dtype of embeddings and hidden layers (``jnp.bfloat16`` for
      mixed precision on accelerators); params, the scores and all losses stay
      float32.
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  embed_dim: int = 32
  user_mlp: Sequence[int] = ()
  item_mlp: Sequence[int] = ()
  head: str = "mlp"
  head_hidden: Sequence[int] = (64, 64)
  offset: float = 0.0
  support_vector: bool = False
  ridge_dim: int = 0
  ridge_reg: float = 5.0
  dtype: Any = None
  extractor: str = "fields"
  transformer: Any = None  # field_transformer.TransformerSpec when extractor == "transformer"

  @nn.compact
  def __call__(self, user_cols: dict[str, jax.Array], item_cols: dict[str, jax.Array],
               support: tuple | None = None, loo: bool = False) -> jax.Array:
    """Scores ``[..., N]``.

    Args:
      user_cols: one user's fields.
      item_cols: fields of the N scored items.
      support: ``(support item fields, residual ratings [S], mask [S])``, used
        when ``support_vector`` is on.
      loo: the scored items are the support items, position for position.
    """
    if self.extractor == "transformer":
      from metarec_jax.models.field_transformer import FieldTransformerExtractor, TransformerSpec
      extractor = FieldTransformerExtractor(self.user_specs, self.item_specs, self.transformer or TransformerSpec(),
                                            dtype=self.dtype or jnp.float32, name="extractor")
    elif self.extractor == "fields":
      extractor = Extractor(self.user_specs, self.item_specs, self.embed_dim, self.user_mlp, self.item_mlp,
                            dtype=self.dtype, name="extractor")
    else:
      raise ValueError(f"unknown extractor {self.extractor!r}; choose fields or transformer")
    f_u = extractor.embed_user(user_cols)
    f_i = extractor.embed_items(item_cols)
    if self.support_vector or self.ridge_dim:
      if support is None:
        raise ValueError("support_vector and ridge_dim need the support set: pass support=(fields, residuals, mask)")
      s_cols, s_resid, s_mask = support
      f_s = extractor.embed_items(s_cols)  # [S, Di]
    ridge = 0.0
    if self.ridge_dim:
      ridge = RidgeUserVector(self.ridge_dim, self.ridge_reg, name="ridge")(f_u, f_i, f_s, s_resid, s_mask, loo)
    if self.support_vector:
      w = (s_resid * s_mask)[..., None]
      total = jnp.sum(w * f_s, axis=-2)
      n = jnp.sum(s_mask)
      if loo:
        vec = (total[..., None, :] - w * f_s) / jnp.maximum(n - 1.0, 1.0)
        f_u = jnp.concatenate([per_item(f_u, vec), vec], axis=-1)
      else:
        f_u = jnp.concatenate([f_u, total / jnp.maximum(n, 1.0)], axis=-1)
    if self.head == "mlp":
      head = MLPHead(self.head_hidden, self.offset, dtype=self.dtype, name="head")
    elif self.head == "relation":
      head = RelationHead(self.offset, name="head")
    elif self.head == "dot":
      head = DotHead(self.offset, name="head")
    else:
      raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")
    if self.head != "mlp":  # bilinear heads: at least float32 for the score
      f_u, f_i = (x.astype(jnp.promote_types(x.dtype, jnp.float32)) for x in (f_u, f_i))
    return head(f_u, f_i) + ridge


def make_predict(model: RecModel, *, residual: bool = False, bias_reg: float = 5.0) -> PredictFn:
  """Returns ``predict(params, features, user, items, support=None, loo=False) -> scores``.

  ``user`` is one user id (a scalar) and ``items`` an id array ``[N]``; the
  feature columns are gathered from the device-resident tables inside the
  traced function, so no per-example tensor is ever built on the host.
  ``support`` is the task's support set ``(items [S], ratings [S], mask [S])``;
  ``loo`` says the scored items are those support items, position for position.
  ``capture=True`` returns ``(scores, inputs)``: the inputs the head's layers
  saw (`fast_weights`; the factored inner loop's ``X``). The function's
  ``fast_layers`` attribute names the layers that take factored updates.

  With ``residual`` the model predicts the residual over the item-mean +
  user-bias baseline: the score adds ``m_i + b_u`` with ``m_i`` the shrunk
  training mean of the item (feature column ``_item_mean``) and ``b_u`` the
  user's mean support residual shrunk by ``bias_reg`` (leave-one-out on the
  support items). With ``model.ridge_dim`` the ridge user vector's intercept
  is the user bias, so ``b_u`` is not added a second time.
  """
  uses_support = residual or model.support_vector or model.ridge_dim > 0

  def apply(params, *args, capture, **kwargs):
    if capture:
      out, state = model.apply({"params": params}, *args, mutable=["intermediates"], **kwargs)
      return out, state.get("intermediates", {})
    return model.apply({"params": params}, *args, **kwargs), None

  def predict(params: Params, features: Features, user: jax.Array, items: jax.Array,
              support: tuple | None = None, loo: bool = False, capture: bool = False):
    user_cols = {k: features.user[k][user] for k in (s.name for s in model.user_specs)}
    item_cols = {k: features.item[k][items] for k in (s.name for s in model.item_specs)}
    if not uses_support:
      out, inputs = apply(params, user_cols, item_cols, capture=capture)
      return (out, inputs) if capture else out
    if support is None:  # no ratings known: an empty support set
      support = (jnp.zeros((1,), jnp.int32), jnp.zeros((1,)), jnp.zeros((1,), bool))
    s_items, s_ratings, s_mask = support
    mask = s_mask.astype(jnp.float32)
    if ITEM_MEAN in features.item:
      means = features.item[ITEM_MEAN]
      s_resid = (s_ratings - means[s_items]) * mask
    else:
      means = None
      s_resid = (s_ratings - model.offset) * mask
    s_cols = {k: features.item[k][s_items] for k in (s.name for s in model.item_specs)}
    out, inputs = apply(params, user_cols, item_cols, support=(s_cols, s_resid, mask), loo=loo, capture=capture)
    if residual:
      if means is None:
        raise ValueError(f"residual models need the item-mean feature column {ITEM_MEAN!r}")
      out = out + means[items]
      if not model.ridge_dim:
        total, n = jnp.sum(s_resid), jnp.sum(mask)
        out = out + ((total - s_resid) / (n - mask + bias_reg) if loo else total / (n + bias_reg))
    return (out, inputs) if capture else out

  if model.head == "mlp":  # layers that take factored inner-loop updates (`fast_weights`)
    predict.fast_layers = tuple(f"head/dense_{i}" for i in range(len(model.head_hidden))) + ("head/out",)
  return predict


def init_params(model: RecModel, features: Features, key: jax.Array) -> Params:
  """Initialises the model's params on one dummy (user, 2 items) example."""
  user_cols = {s.name: features.user[s.name][0] for s in model.user_specs}
  idx = jnp.zeros((2,), jnp.int32)
  item_cols = {s.name: features.item[s.name][idx] for s in model.item_specs}
  support = None
  if model.support_vector or model.ridge_dim:
    support = (item_cols, jnp.zeros((2,)), jnp.ones((2,)))
  return jax.jit(lambda k: model.init(k, user_cols, item_cols, support))(key)["params"]
