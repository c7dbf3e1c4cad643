"""The recommender: extractor + head, and the pure predict function."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.data.interactions import FieldSpec
from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.models import registry
from metarec_jax.models.heads import per_item
from metarec_jax.models.ridge import RidgeUserVector
from metarec_jax.types import Features, Params, PredictFn

# The built-in heads (`registry.HEADS` holds these and any registered since).
HEADS = tuple(registry.HEADS)


class FeatureModel(nn.Module):
  """What every model shares: the user and item fields and the registered extractor that embeds them.

  `RecModel` (extractor + head) and `conditioned.ConditionedModel` (extractor
  + a support-set encoder) extend it; the extractor's params live under
  ``extractor`` in both.

  Attributes:
    user_specs: user fields fed to the extractor.
    item_specs: item fields fed to the extractor.
    embed_dim: embedding width per field.
    user_mlp: user tower MLP sizes.
    item_mlp: item tower MLP sizes.
    offset: the mean training rating (0 for implicit feedback and residual
      models): `RecModel`'s initial global bias; conditioned models centre
      support ratings on it and add it back to scores.
    dtype: compute dtype of embeddings and hidden layers (``jnp.bfloat16`` for
      mixed precision on accelerators); params, the scores and all losses stay
      float32.
    extractor: a registered extractor (`registry.EXTRACTORS`): ``fields``
      (`Extractor`) or ``transformer`` (`field_transformer.FieldTransformerExtractor`,
      shaped by ``transformer``), or yours.
    transformer: the field transformer's spec (``extractor="transformer"``).
  """

  user_specs: Sequence[FieldSpec]
  item_specs: Sequence[FieldSpec]
  embed_dim: int = 32
  user_mlp: Sequence[int] = ()
  item_mlp: Sequence[int] = ()
  offset: float = 0.0
  dtype: Any = None
  extractor: str = "fields"
  transformer: Any = None  # field_transformer.TransformerSpec when extractor == "transformer"

  @nn.nowrap
  def make_extractor(self, **module_kwargs) -> nn.Module:
    """The model's extractor module (params under ``extractor``); ``parent=None`` for a stand-alone one."""
    return registry.build_extractor(self, **module_kwargs)

  @nn.nowrap
  def embed(self, params: Params, user_cols: dict[str, jax.Array],
            item_cols: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The extractor's ``(f_u, f_i)`` under ``params`` (the model's whole param tree)."""
    extractor = self.make_extractor(parent=None)
    ext = {"params": params["extractor"]}
    return (extractor.apply(ext, user_cols, method="embed_user"),
            extractor.apply(ext, item_cols, method="embed_items"))

  @nn.nowrap
  def item_side(self, path: str) -> bool:
    """Whether the param at ``path`` shapes item features (serving caches them when none of these adapt)."""
    return path.startswith("extractor/item")


class RecModel(FeatureModel):
  """Scores items for a user: ``head(extractor(user fields, item fields))``.

  Optionally the user side also gets a support-set vector (``support_vector``):
  the mean of the support items' feature vectors weighted by their residual
  ratings (FISM-like, amortised), computed leave-one-out when the scored items
  are the support items themselves, so a support rating never predicts itself.
  With ``ridge_dim`` the score also gets a closed-form user vector: a ridge
  solution over learned item factors of the support residuals
  (`ridge.RidgeUserVector`, leave-one-out on the support items too).

  Attributes (beyond `FeatureModel`'s fields and extractor):
    head: a registered head (`registry.HEADS`: ``mlp``, ``relation``, ``dot``, yours).
    head_hidden: hidden sizes of the MLP head.
    support_vector: add the support-set user vector to the user features.
    ridge_dim: > 0 adds the ridge user vector's score with this many item
      factors (plus an intercept, the user bias).
    ridge_reg: initial ridge penalty of every factor.
    ridge_fields: dense item fields that enter the ridge item factors only
      (not the extractor or the head), as ``ridge_content_dim`` more factors
      with prior 0 (`ridge.RidgeUserVector`'s content block).
    ridge_content_dim: factors of ``ridge_fields``.
    ridge_content_reg: their initial ridge penalty.
  """

  head: str = "mlp"
  head_hidden: Sequence[int] = (64, 64)
  support_vector: bool = False
  ridge_dim: int = 0
  ridge_reg: float = 5.0
  ridge_fields: Sequence[str] = ()
  ridge_content_dim: int = 16
  ridge_content_reg: float = 100.0

  @nn.nowrap
  def make_head(self, **module_kwargs) -> nn.Module:
    """The model's head module (params under ``head``); ``parent=None`` for a stand-alone one."""
    return registry.build_head(self, **module_kwargs)

  @nn.nowrap
  def fast_layers(self) -> tuple[str, ...]:
    """Param paths of the layers that take factored inner-loop updates."""
    return tuple(f"head/{name}" for name in registry.head_fast_layers(self))

  @nn.nowrap
  def score_features(self, params: Params, f_u: jax.Array, f_i: jax.Array) -> jax.Array:
    """The head's scores of feature vectors (without support-set terms)."""
    return self.make_head(parent=None).apply({"params": params["head"]}, f_u, f_i)

  @nn.nowrap
  def ridge_content(self, item_cols: dict[str, jax.Array]) -> jax.Array:
    """The ``ridge_fields`` columns of ``item_cols``, side by side ``[..., Dc]``."""
    missing = [f for f in self.ridge_fields if f not in item_cols]
    if missing:
      raise ValueError(f"model.ridge_fields {missing}: not among the item columns given ({sorted(item_cols)})")
    return jnp.concatenate([item_cols[f].astype(jnp.float32) for f in self.ridge_fields], axis=-1)

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
    extractor = self.make_extractor(name="extractor")
    f_u = extractor.embed_user(user_cols)
    f_i = extractor.embed_items(item_cols)
    if self.support_vector or self.ridge_dim:
      if support is None:
        raise ValueError("support_vector and ridge_dim need the support set: pass support=(fields, residuals, mask)")
      s_cols, s_resid, s_mask = support
      f_s = extractor.embed_items(s_cols)  # [S, Di]
    ridge = 0.0
    if self.ridge_dim:
      content = {}
      if self.ridge_fields:
        content = dict(c_i=self.ridge_content(item_cols), c_s=self.ridge_content(s_cols))
      ridge = RidgeUserVector(self.ridge_dim, self.ridge_reg, self.ridge_content_dim if self.ridge_fields else 0,
                              self.ridge_content_reg, name="ridge")(f_u, f_i, f_s, s_resid, s_mask, loo, **content)
    if self.support_vector:
      w = (s_resid * s_mask)[..., None]
      total = jnp.sum(w * f_s, axis=-2)
      n = jnp.sum(s_mask)
      if loo:
        vec = (total[..., None, :] - w * f_s) / jnp.maximum(n - 1.0, 1.0)
        f_u = jnp.concatenate([per_item(f_u, vec), vec], axis=-1)
      else:
        f_u = jnp.concatenate([f_u, total / jnp.maximum(n, 1.0)], axis=-1)
    head = self.make_head(name="head")
    return head(f_u, f_i) + ridge


def item_columns(model: Any) -> tuple[str, ...]:
  """Names of the item columns a model reads: its item fields, then a `RecModel`'s ``ridge_fields``."""
  names = tuple(s.name for s in model.item_specs)
  return names + tuple(f for f in getattr(model, "ridge_fields", ()) if f not in names)


def make_predict(model: RecModel, *, residual: bool = False, bias_reg: float = 5.0) -> PredictFn:
  """Returns ``predict(params, features, user, items, support=None, loo=False) -> scores``.

  ``user`` is one user id (a scalar) and ``items`` an id array ``[N]``; the
  feature columns are gathered from the device-resident tables inside the
  traced function, so no per-example tensor is ever built on the host.
  ``support`` is the task's support set ``(items [S], ratings [S], mask [S])``;
  ``loo`` says the scored items are those support items, position for position.
  ``capture=True`` returns ``(scores, inputs)``: the inputs the head's layers
  saw (`fast_weights`; the factored inner loop's ``X``). The returned
  `Predict` says which layers take factored updates (``fast_layers``) and
  whether scores depend on the support set (``uses_support``).

  With ``residual`` the model predicts the residual over the item-mean +
  user-bias baseline: the score adds ``m_i + b_u`` with ``m_i`` the shrunk
  training mean of the item (feature column ``_item_mean``) and ``b_u`` the
  user's mean support residual shrunk by ``bias_reg`` (leave-one-out on the
  support items). With ``model.ridge_dim`` the ridge user vector's intercept
  is the user bias, so ``b_u`` is not added a second time.
  """
  uses_support = residual or model.support_vector or model.ridge_dim > 0
  item_names = item_columns(model)

  def apply(params, *args, capture, **kwargs):
    if capture:
      out, state = model.apply({"params": params}, *args, mutable=["intermediates"], **kwargs)
      return out, state.get("intermediates", {})
    return model.apply({"params": params}, *args, **kwargs), None

  def predict(params: Params, features: Features, user: jax.Array, items: jax.Array,
              support: tuple | None = None, loo: bool = False, capture: bool = False):
    user_cols = {k: features.user[k][user] for k in (s.name for s in model.user_specs)}
    item_cols = {k: features.item[k][items] for k in item_names}
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
    s_cols = {k: features.item[k][s_items] for k in item_names}
    out, inputs = apply(params, user_cols, item_cols, support=(s_cols, s_resid, mask), loo=loo, capture=capture)
    if residual:
      if means is None:
        raise ValueError(f"residual models need the item-mean feature column {ITEM_MEAN!r}")
      out = out + means[items]
      if not model.ridge_dim:
        total, n = jnp.sum(s_resid), jnp.sum(mask)
        out = out + ((total - s_resid) / (n - mask + bias_reg) if loo else total / (n + bias_reg))
    return (out, inputs) if capture else out

  return Predict(predict, fast_layers=tuple(model.fast_layers()), uses_support=bool(uses_support))


@dataclasses.dataclass(frozen=True)
class Predict:
  """A model's predict function with what the engine needs to know about it (`types.PredictFn`).

  Attributes:
    fn: ``fn(params, features, user, items, support=None, loo=False, capture=False)``.
    fast_layers: param paths of the layers that take factored inner-loop updates.
    uses_support: the scores depend on the support set.
  """

  fn: Callable[..., Any]
  fast_layers: tuple[str, ...] = ()
  uses_support: bool = False

  def __call__(self, params: Params, features: Features, user: jax.Array, items: jax.Array,
               support: tuple | None = None, loo: bool = False, capture: bool = False):
    return self.fn(params, features, user, items, support, loo, capture)


def init_params(model: RecModel, features: Features, key: jax.Array) -> Params:
  """Initialises the model's params on one dummy (user, 2 items) example.

  Text encoders of ``tokens`` item fields then get their pretrained weights
  (`load_pretrained_encoders`).
  """
  user_cols = {s.name: features.user[s.name][0] for s in model.user_specs}
  idx = jnp.zeros((2,), jnp.int32)
  item_cols = {k: features.item[k][idx] for k in item_columns(model)}
  support = None
  if model.support_vector or model.ridge_dim:
    support = (item_cols, jnp.zeros((2,)), jnp.ones((2,)))
  params = jax.jit(lambda k: model.init(k, user_cols, item_cols, support))(key)["params"]
  return load_pretrained_encoders(model, params)


def load_pretrained_encoders(model: FeatureModel, params: Params) -> Params:
  """``params`` with the pretrained weights of every ``tokens`` item field's text encoder.

  The encoder of item field ``F`` lives at ``extractor/item/F/text_encoder``
  (`extractor.TokensEmbedding`); its base weights are replaced by those of
  ``F``'s `text.EncoderSpec.directory` (`text.load_params`); adapters keep
  their initial values. Fields whose spec names no directory (random
  weights: tests) and models without such fields are left as they are.

  Raises:
    ValueError: the field's params are not where the ``fields`` extractor puts
      them, or the files hold another shape than the field's config.
  """
  from metarec_jax.models import text  # the text extra's packages are needed only when a field asks
  specs = [s for s in model.item_specs if s.kind == "tokens" and s.encoder is not None and s.encoder.directory]
  if not specs:
    return params
  item = dict(params.get("extractor", {}).get("item", {}))
  for s in specs:
    if text.ENCODER not in item.get(s.name, {}):
      raise ValueError(f"tokens field {s.name!r}: no encoder params at extractor/item/{s.name}/{text.ENCODER} "
                       f"(model.extractor={getattr(model, 'extractor', '?')!r}; tokens fields need the 'fields' extractor)")
    directory = text.find_pretrained(s.encoder.directory)
    pretrained = text.load_params(directory, s.encoder.config)
    field = dict(item[s.name])
    field[text.ENCODER] = text.merge_pretrained(field[text.ENCODER], pretrained, f"tokens field {s.name!r} ({directory})")
    item[s.name] = field
  return {**params, "extractor": {**params["extractor"], "item": item}}
