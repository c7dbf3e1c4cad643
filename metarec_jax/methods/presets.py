"""Named presets: the strong configurations, available to every experiment by name.

A preset is a variant (``key=value`` changes and a base method) that the
framework defines once, so a researcher who brings a new data set gets the
configuration that beats the baselines without reading `melu_ml1m.py`::

    c.methods = ("item_mean_user_bias", "melu", "melu_plus", "melu_ridge")

An experiment file's own ``c.variants[name]`` takes precedence over the
preset of that name. A run writes the presets it uses into its
``config.json`` (as variants), so the run folder records what they were.

The settings and why (measured on MeLU's ML-1M release, README "Reproducing MeLU"):

* ``melu_plus``: MeLU (local update of the decision layers) predicting the
  residual over the item-mean + support user-bias baseline, with the item id
  and the item's shrunk training mean and log count as inputs, a FISM-like
  user vector from the support set, and, when the run scores an item-cold
  scenario, item-cold simulation in training (30% of the items per batch lose
  their id and statistics).
* ``melu_ridge``: ``melu_plus`` plus a closed-form ridge user vector over 16
  learned item factors with a prior from the user's features.
* ``maml_plus`` / ``maml_ridge``: the same with MAML (every param adapts).
* ``*_long``: twice the training steps of the experiment (a function of its
  ``train.steps``).
* ``dropoutnet``: DropoutNet (Volkovs et al., NeurIPS 2017) as a pooled,
  non-meta model: user-id and item-id embeddings beside the experiment's
  content fields, trained with item-id dropout (``train.item_cold_share``:
  per batch half of the items lose their id, as DropoutNet drops the
  preference input with rate 0.5), so the model learns to score an item from
  its content alone, which is what a cold item has. Unlike the original, the
  id embeddings are learned jointly with the rest instead of being fixed
  pretrained WMF vectors, only the item side is dropped (the benchmark's
  users are all warm), and the model is the experiment's extractor + head
  rather than DropoutNet's separate user / item towers with a dot product
  (set ``model.head=dot`` in a variant for that).
"""

from __future__ import annotations

from typing import Callable

import ml_collections

_PLUS = ("model.residual=true", "model.item_id=true", "model.item_stats=true", "model.support_vector=true")
_RIDGE = _PLUS + ("model.ridge_dim=16",)
ITEM_COLD_SHARE = 0.3  # items hidden per batch when the run scores item-cold scenarios


def preset(learner: str, changes: tuple[str, ...], *, long: bool = False
           ) -> Callable[[ml_collections.ConfigDict], ml_collections.ConfigDict]:
  """A preset as a function variant of the experiment's config.

  Args:
    learner: the learner it trains (``meta.learner``).
    changes: ``key=value`` changes.
    long: double the experiment's ``train.steps``.

  Item-cold simulation (``train.item_cold_share``) is switched on only when
  the run scores an item-cold scenario: it costs warm and user-cold accuracy
  where no item is new.
  """
  from metarec_jax import config as cfg_lib

  def vary(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    c = cfg_lib.apply_overrides(c, (f"meta.learner={learner}",) + changes)
    if any(s in ("item_cold", "user_item_cold") for s in c.eval.scenarios):
      c.train.item_cold_share = ITEM_COLD_SHARE
    if long:
      c.train.steps = 2 * c.train.steps
    return c

  return vary


DROPOUT_SHARE = 0.5  # dropoutnet: items whose id is dropped per batch (DropoutNet's dropout rate)


def dropoutnet(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The ``dropoutnet`` preset: the pooled model with user / item ids and item-id dropout (see above)."""
  from metarec_jax import config as cfg_lib
  c = cfg_lib.apply_overrides(c, ("meta.learner=pooled", "model.item_id=true", "model.user_id=true"))
  c.train.item_cold_share = DROPOUT_SHARE
  return c


PRESETS: dict[str, Callable] = {
    "melu_plus": preset("melu", _PLUS),
    "melu_ridge": preset("melu", _RIDGE),
    "maml_plus": preset("maml", _PLUS),
    "maml_ridge": preset("maml", _RIDGE),
    "melu_plus_long": preset("melu", _PLUS, long=True),
    "melu_ridge_long": preset("melu", _RIDGE, long=True),
    "dropoutnet": dropoutnet,
}


def with_presets(config: ml_collections.ConfigDict, names=None) -> ml_collections.ConfigDict:
  """``config`` with the presets among ``names`` (default: ``config.methods``) added to its variants.

  Names the config defines as variants itself are left as they are. The
  input is not changed; when no preset is needed it is returned as is.
  """
  names = config.methods if names is None else names
  needed = [n for n in names if n in PRESETS and n not in config.variants]
  if not needed:
    return config
  out = ml_collections.ConfigDict(config.to_dict())
  for name in needed:
    out.variants[name] = PRESETS[name]
  return out


__all__ = ["PRESETS", "with_presets"]
