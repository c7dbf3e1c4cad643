"""Features derived from the meta-training ratings of one split.

Id embeddings and item statistics may only know what meta-training saw:

* ``item_id`` / ``user_id``: categorical ids for the entities with training
  ratings; every other entity (cold ones included) shares id 0.
* ``item_stats``: dense ``[shrunk mean - μ, log1p(count) / 5]`` per item
  (``[0, 0]`` for items without training ratings).
* ``_item_mean``: the shrunk mean training rating per item (μ when unseen),
  the baseline that residual models add to their output; with a content
  prior (`content_prior`, ``data.content_prior``) items shrink toward their
  prior instead of μ, an unseen item's mean is its prior, and the prior is
  kept as ``_item_prior``.

`hide_items` blanks these for a random share of items (item-cold simulation),
so a model trained with it learns to fall back on content for new items.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarec_jax.data.interactions import FieldSpec, Interactions
from metarec_jax.data.tasks import Features

ITEM_MEAN = "_item_mean"
ITEM_PRIOR = "_item_prior"
DERIVED_ITEM_FIELDS = {"item_id", "item_stats"}
DERIVED_USER_FIELDS = {"user_id"}


def derived_columns(train: Interactions, num_users: int, num_items: int, item_mean_reg: float = 5.0,
                    prior: np.ndarray | None = None):
  """Builds the derived columns and their specs from meta-training ratings.

  Args:
    train: the meta-training ratings.
    num_users: users of the data set.
    num_items: items of the data set.
    item_mean_reg: pseudo-ratings that shrink each item's mean toward its prior.
    prior: ``[num_items]`` prior mean rating per item (`content_prior`); None: μ.

  Returns:
    ``(user_columns, user_specs, item_columns, item_specs, global_mean)``.
  """
  mu = float(train.rating.mean())
  count = np.bincount(train.item, minlength=num_items).astype(np.float64)
  total = np.bincount(train.item, train.rating, minlength=num_items)
  base = mu if prior is None else np.asarray(prior, np.float64)
  mean = (total + item_mean_reg * base) / (count + item_mean_reg)
  seen_items = count > 0
  item_cols = {
      "item_id": np.where(seen_items, np.arange(num_items) + 1, 0).astype(np.int32),
      "item_stats": np.stack([np.where(seen_items, mean - mu, 0.0), np.log1p(count) / 5.0], 1).astype(np.float32),
      ITEM_MEAN: mean.astype(np.float32),
  }
  if prior is not None:
    item_cols[ITEM_PRIOR] = np.asarray(prior, np.float32)
  item_specs = (FieldSpec("item_id", "categorical", vocab_size=num_items + 1),
                FieldSpec("item_stats", "dense", width=2))
  seen_users = np.bincount(train.user, minlength=num_users) > 0
  user_cols = {"user_id": np.where(seen_users, np.arange(num_users) + 1, 0).astype(np.int32)}
  user_specs = (FieldSpec("user_id", "categorical", vocab_size=num_users + 1),)
  return user_cols, user_specs, item_cols, item_specs, mu


def hide_items(features: Features, key: jax.Array, share: float, global_mean: float) -> Features:
  """Makes a random ``share`` of items look cold: id 0, zero stats, mean μ (or their content prior).

  Content fields are left alone; with a content prior (column ``_item_prior``)
  a hidden item's mean becomes its prior, as a cold item's is. Traceable (use
  inside the jitted step).
  """
  item = dict(features.item)
  some = next(iter(item.values()))
  hidden = jax.random.bernoulli(key, share, (some.shape[0],))
  if "item_id" in item:
    item["item_id"] = jnp.where(hidden, 0, item["item_id"])
  if "item_stats" in item:
    item["item_stats"] = jnp.where(hidden[:, None], 0.0, item["item_stats"])
  if ITEM_MEAN in item:
    fallback = item[ITEM_PRIOR] if ITEM_PRIOR in item else global_mean
    item[ITEM_MEAN] = jnp.where(hidden, fallback, item[ITEM_MEAN])
  return features.replace(item=item)
