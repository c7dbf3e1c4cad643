"""Models whose scores are a function of the user's support set: set encoders, neural processes, modulation.

MeLU's successors that adapt without (or beside) inner gradient steps --
TaNP, CMML / ColdNAS, LWA / NLBA -- read the support set ``(items, ratings)``
through a learned encoder and score the query items with what it produced.
They share everything up to the encoder with `RecModel`: the registered
extractors (``model.extractor``: field embeddings, the field transformer,
text fields) turn the user's and the items' fields into ``f_u``, ``f_i``,
and ``f_s`` (the support items' features). A subclass of `ConditionedModel`
writes its own compact ``__call__`` and starts it with `embed_task`::

    class MyModel(ConditionedModel):
      @nn.compact
      def __call__(self, user_cols, item_cols, support, loo=False, target=None):
        f_u, f_i, f_s, s_y, s_mask = self.embed_task(user_cols, item_cols, support)
        ...                                  # encode (f_s, s_y) under s_mask, score f_i
        self.sow("losses", "kl", kl)         # regularisers join the training loss
        return scores                        # [N]

``target`` holds the scored items' ``(ratings [N], mask [N])`` during
training (a neural process's posterior reads it) and is None when scoring.
Regularisers are sown into the ``losses`` collection; `task_query_loss`
adds them to the query loss. `make_conditioned_predict` turns the model into
the engine's predict function, so training, evaluation and serving run
through the same jitted, vmapped code as every learner (with
``meta.inner_steps = 0``: the encoder is the adaptation).
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarec_jax.models.model import FeatureModel, Predict, load_pretrained_encoders
from metarec_jax.types import Features, Params, Support

LOSSES = "losses"  # the collection regularisers are sown into


class ConditionedModel(FeatureModel):
  """Base of the support-conditioned models: `FeatureModel`'s extractor and the task's feature vectors.

  The fields (``user_specs``, ``item_specs``, ``embed_dim``, the towers,
  ``extractor``, ``transformer``, ``dtype``, ``offset``) are `FeatureModel`'s;
  subclasses centre support ratings on ``offset`` (the mean training rating,
  0 for implicit feedback) and add it back to scores.
  """

  @nn.nowrap
  def embed_task(self, user_cols: dict[str, jax.Array], item_cols: dict[str, jax.Array],
                 support: tuple) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(f_u [Du], f_i [N, Di], f_s [S, Di], support ratings [S], support mask [S] float)``.

    Call it first inside a subclass's compact ``__call__``: the extractor's
    params live under ``extractor``.
    """
    extractor = self.make_extractor(name="extractor")
    s_cols, s_y, s_mask = support
    f_u = extractor.embed_user(user_cols).astype(jnp.float32)
    f_i = extractor.embed_items(item_cols).astype(jnp.float32)
    f_s = extractor.embed_items(s_cols).astype(jnp.float32)
    return f_u, f_i, f_s, s_y.astype(jnp.float32), s_mask.astype(jnp.float32)


def masked_mean(x: jax.Array, mask: jax.Array, axis: int = -2) -> jax.Array:
  """Mean of ``x`` over the valid rows (``mask`` broadcast on the last axis); 0 when none is valid."""
  m = mask[..., None]
  return jnp.sum(x * m, axis=axis) / jnp.maximum(jnp.sum(m, axis=axis), 1.0)


def _columns(model: ConditionedModel, features: Features, user, items, support: Support | None):
  user_cols = {s.name: features.user[s.name][user] for s in model.user_specs}
  item_cols = {s.name: features.item[s.name][items] for s in model.item_specs}
  if support is None:  # no ratings known: an empty support set
    support = (jnp.zeros((1,), jnp.int32), jnp.zeros((1,)), jnp.zeros((1,), bool))
  s_items, s_y, s_mask = support
  s_cols = {s.name: features.item[s.name][s_items] for s in model.item_specs}
  return user_cols, item_cols, (s_cols, s_y, s_mask)


def apply_conditioned(model: ConditionedModel, params: Params, features: Features, user: jax.Array,
                      items: jax.Array, support: Support | None = None, target: tuple | None = None,
                      loo: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Scores ``items`` given the support set; returns ``(scores [N], {regulariser name: value})``.

  Args:
    model: the model.
    params: its params.
    features: the feature tables.
    user: one user id.
    items: ``[N]`` item ids.
    support: ``(items [S], ratings [S], mask [S])``; None: empty.
    target: the scored items' ``(ratings [N], mask [N])`` (training only).
    loo: the scored items are the support items, position for position:
      item ``j`` is scored with support entry ``j`` masked out (one encoder
      pass per item, so a support rating never predicts itself).
  """
  if loo:
    s_items, s_y, s_mask = support
    n = s_items.shape[0]

    def one(j):
      keep = s_mask & (jnp.arange(n) != j)
      t = None if target is None else (target[0][j][None], target[1][j][None])
      s, r = apply_conditioned(model, params, features, user, items[j][None], (s_items, s_y, keep), t)
      return s[0], r

    scores, regs = jax.vmap(one)(jnp.arange(n))
    return scores, jax.tree_util.tree_map(jnp.mean, regs)
  user_cols, item_cols, sup = _columns(model, features, user, items, support)
  out, state = model.apply({"params": params}, user_cols, item_cols, sup, False, target, mutable=[LOSSES])
  regs = {"/".join(k): v for k, v in _flat(state.get(LOSSES, {})).items()}
  return out, regs


def _flat(tree, prefix=()) -> dict[tuple[str, ...], jax.Array]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, prefix + (k,)))
    else:  # sow keeps a tuple of the values sown under one name
      out[prefix + (k,)] = sum(jnp.asarray(x, jnp.float32) for x in (v if isinstance(v, tuple) else (v,)))
  return out


def make_conditioned_predict(model: ConditionedModel) -> Predict:
  """The engine's predict function of a support-conditioned model (`types.PredictFn`).

  ``capture`` (factored inner updates) is not supported: no layer of these
  models takes factored updates (``fast_layers`` is empty).
  """

  def predict(params, features, user, items, support=None, loo=False, capture=False):
    if capture:
      raise ValueError("support-conditioned models have no factored layers; use meta.factored=off")
    return apply_conditioned(model, params, features, user, items, support, loo=loo)[0]

  return Predict(predict, fast_layers=(), uses_support=True)


def init_conditioned(model: ConditionedModel, features: Features, key: jax.Array) -> Params:
  """Initialises the model's params on one dummy (user, 2 items, 2 support items) example."""
  user_cols = {s.name: features.user[s.name][0] for s in model.user_specs}
  idx = jnp.zeros((2,), jnp.int32)
  item_cols = {s.name: features.item[s.name][idx] for s in model.item_specs}
  support = (item_cols, jnp.zeros((2,)), jnp.ones((2,)))
  target = (jnp.zeros((2,)), jnp.ones((2,)))
  params = jax.jit(lambda k: model.init(k, user_cols, item_cols, support, False, target))(key)["params"]
  return load_pretrained_encoders(model, params)  # tokens item fields: the encoder's pretrained weights


__all__ = ["ConditionedModel", "LOSSES", "apply_conditioned", "init_conditioned", "make_conditioned_predict",
           "masked_mean"]
