"""A content prior for item means: what an item's side information says about its mean rating.

An item without training ratings (a cold item, or one that item-cold
simulation hides) gets the mean training rating μ as its baseline. With
``data.content_prior = (FIELD, ...)`` it gets ``μ + x_iᵀβ`` instead: a
weighted ridge regression, fitted once per seed on the training items only,
of each item's mean training rating on its content vector ``x_i`` (the named
item fields: dense vectors such as the MiniLM text embedding ``text_emb``,
and categorical / multi-hot fields one-hot encoded). Items with training
ratings shrink toward that prior instead of μ (``model.item_mean_reg``
pseudo-ratings of it).

Each item's squared error is weighted by ``n / (n + item_mean_reg)`` (``n``
its training ratings: a mean of two ratings says little), and the penalty
``λ`` is chosen among ``CONTENT_PRIOR_REGS`` by the weighted leave-one-item-out
error, in closed form from the hat matrix: no item of any test scenario takes
part in the choice.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from metarec_jax.data.interactions import FeatureTable, Interactions

CONTENT_PRIOR_REGS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
MAX_ONE_HOT = 4096  # categorical vocabularies above this are refused (the design matrix is dense)


@dataclasses.dataclass(frozen=True)
class ContentPrior:
  """A fitted content prior.

  Attributes:
    prior: ``float32 [num_items]``, the prior mean rating of every item.
    reg: the chosen ridge penalty.
    loo_mae: weighted leave-one-item-out MAE of the prior on the training items' means.
    base_mae: the same error of μ (no content), for comparison.
    fields: the content fields.
    width: columns of the design matrix (intercept included).
  """

  prior: np.ndarray
  reg: float
  loo_mae: float
  base_mae: float
  fields: tuple[str, ...]
  width: int

  def note(self) -> str:
    """One line for the run's log."""
    return (f"content prior from {', '.join(self.fields)} ({self.width} columns, ridge λ={self.reg:g} by "
            f"leave-one-item-out): training items' mean MAE {self.loo_mae:.4f} vs {self.base_mae:.4f} for μ")


def content_matrix(items: FeatureTable, fields: Sequence[str]) -> np.ndarray:
  """The items' content vectors ``float64 [num_items, D]``: dense fields as they are, ids one-hot.

  Raises:
    KeyError: a field the item table lacks (the message lists those it has).
    ValueError: a categorical field with more than `MAX_ONE_HOT` ids.
  """
  specs = {s.name: s for s in items.specs}
  blocks = []
  for name in fields:
    if name not in specs:
      raise KeyError(f"data.content_prior: no item field {name!r}; item fields: {sorted(specs)}")
    spec, col = specs[name], np.asarray(items.columns[name])
    if spec.kind == "dense":
      blocks.append(col.reshape(len(col), -1).astype(np.float64))
      continue
    if spec.vocab_size > MAX_ONE_HOT:
      raise ValueError(f"data.content_prior: field {name!r} has {spec.vocab_size} ids, too many to one-hot "
                       f"(at most {MAX_ONE_HOT}); leave it out or embed it as a dense field")
    ids = col.reshape(len(col), -1)
    hot = np.zeros((len(col), spec.vocab_size), np.float64)
    rows = np.repeat(np.arange(len(col)), ids.shape[1])
    np.add.at(hot, (rows, ids.ravel()), 1.0)
    blocks.append(hot[:, 1:])  # id 0 is padding / unknown
  return np.concatenate(blocks, axis=1)


def fit_content_prior(content: np.ndarray, train: Interactions, item_mean_reg: float = 5.0,
                      regs: Sequence[float] = CONTENT_PRIOR_REGS, fields: Sequence[str] = ()) -> ContentPrior:
  """Fits the prior on the items with training ratings (see the module docstring).

  Args:
    content: ``[num_items, D]`` content vectors (`content_matrix`).
    train: the training ratings (the only ratings the fit sees).
    item_mean_reg: shrinkage of item means (the weights' ``n / (n + reg)``).
    regs: ridge penalties to choose from.
    fields: the fields' names, for the description.

  Raises:
    ValueError: no item has training ratings.
  """
  num_items = len(content)
  mu = float(train.rating.mean())
  count = np.bincount(train.item, minlength=num_items).astype(np.float64)
  total = np.bincount(train.item, train.rating, minlength=num_items)
  seen = count > 0
  if not seen.any():
    raise ValueError("data.content_prior: no item has training ratings")
  x = np.concatenate([np.ones((num_items, 1)), content], axis=1)
  xs, y = x[seen], total[seen] / count[seen] - mu
  w = count[seen] / (count[seen] + item_mean_reg)
  scale = np.sqrt(w)[:, None]
  xw, yw = xs * scale, y * np.sqrt(w)
  gram, rhs = xw.T @ xw, xw.T @ yw
  eye = np.eye(x.shape[1])
  eye[0, 0] = 0.0  # the intercept is not shrunk
  best = None
  for reg in regs:
    inv = np.linalg.inv(gram + reg * eye + 1e-9 * np.eye(x.shape[1]))
    beta = inv @ rhs
    hat = np.einsum("ij,jk,ik->i", xw, inv, xw)  # diagonal of the weighted hat matrix
    loo = (y - xs @ beta) / (1.0 - hat)
    err = float(np.sum(w * np.abs(loo)) / np.sum(w))
    if best is None or err < best[0]:
      best = (err, reg, beta)
  err, reg, beta = best
  base = float(np.sum(w * np.abs(y)) / np.sum(w))
  prior = (mu + x @ beta).astype(np.float32)
  return ContentPrior(prior, float(reg), err, base, tuple(fields), int(x.shape[1]))


__all__ = ["CONTENT_PRIOR_REGS", "ContentPrior", "content_matrix", "fit_content_prior"]
