"""Simple baselines' predictions (no gradient): global mean, item mean + user bias.

The methods that use them (and their tuning) are in `metarec_jax.methods.baselines`.

``item_mean_user_bias`` predicts ``m_i + b_u``: ``m_i`` is the item's mean
training rating shrunk toward the global mean with weight ``item_reg``
(``(Σ r + λ μ) / (n + λ)``; items never rated in training get ``μ``), and
``b_u`` is the user's mean residual ``r - m_i`` over the support set, shrunk
toward 0 with weight ``user_reg``. Both weights are chosen on validation users.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarec_jax.data.interactions import Interactions
from metarec_jax.types import TaskBatch

@dataclasses.dataclass(frozen=True)
class RatingStats:
  """Training-rating statistics: global mean, per-item sums and counts."""

  mean: float
  item_sum: np.ndarray
  item_count: np.ndarray

  @classmethod
  def from_ratings(cls, ratings: Interactions, num_items: int) -> "RatingStats":
    return cls(mean=float(ratings.rating.mean()),
               item_sum=np.bincount(ratings.item, ratings.rating, minlength=num_items),
               item_count=np.bincount(ratings.item, minlength=num_items).astype(np.float64))

  def item_means(self, item_reg: float) -> np.ndarray:
    return ((self.item_sum + item_reg * self.mean) / np.maximum(self.item_count + item_reg, 1e-9)).astype(
        np.float32)


def predict_global_mean(stats: RatingStats, batch: TaskBatch) -> np.ndarray:
  """The training mean for every query rating."""
  return np.full(np.shape(batch.query_items), stats.mean, np.float32)


def predict_item_mean_user_bias(stats: RatingStats, batch: TaskBatch, item_reg: float,
                                user_reg: float) -> np.ndarray:
  """Shrunk item mean plus the user's shrunk mean residual on the support set (host numpy)."""
  means = stats.item_means(item_reg)
  m = np.asarray(batch.support_mask, np.float32)
  resid = (np.asarray(batch.support_ratings) - means[np.asarray(batch.support_items)]) * m
  bias = resid.sum(-1) / (m.sum(-1) + user_reg + 1e-9)
  return (means[np.asarray(batch.query_items)] + bias[:, None]).astype(np.float32)
