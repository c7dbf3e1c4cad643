"""The embedded default data set: a cold-start generator with known ground truth.

Users have four categorical fields, items two categorical fields and one
multi-hot field. Each user has a latent preference vector and each item a
latent vector; both are a sum of a part the side features explain and an
individual part they do not. A rating is

    raw(u, i) = b_u + b_i + p_u . q_i + noise,

cut into the integers 1..5 at fixed quantiles (MovieLens-like shares). Because
the individual part of ``p_u`` is invisible in the features, a model must adapt
to each user from the user's few ratings: that is what meta-learning is for.

Cold users are drawn from a shifted feature distribution and never appear in
meta-training; cold items likewise. Everything is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec, Interactions

# Share of each rating value 1..5, roughly MovieLens-1M.
_RATING_SHARES = np.array([0.06, 0.11, 0.26, 0.35, 0.22])


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """Sizes and strengths of the synthetic generator.

  Attributes:
    num_users: number of users.
    num_items: number of items.
    latent_dim: dimension of the latent preference vectors.
    feature_share: share of the latent variance the side features explain
      (0 = features useless, 1 = no individual part).
    cold_user_share: share of users that are cold (held out from training).
    cold_item_share: share of items that are cold.
    min_ratings: least ratings per user on warm items (and on cold items).
    max_ratings: most ratings per user on warm items (and on cold items).
    noise: standard deviation of the rating noise before quantisation.
    seed: generator seed.
  """

  num_users: int = 1200
  num_items: int = 400
  latent_dim: int = 6
  feature_share: float = 0.35
  cold_user_share: float = 0.25
  cold_item_share: float = 0.25
  min_ratings: int = 16
  max_ratings: int = 40
  noise: float = 0.3
  seed: int = 0


USER_FIELDS = (("gender", 2), ("age", 7), ("occupation", 12), ("region", 20))
ITEM_FIELDS = (("category", 8), ("brand", 15))
ITEM_TAGS = ("tags", 12, 3)  # name, number of tags, max tags per item


def _categorical(rng: np.random.Generator, n: int, k: int, shift: np.ndarray | None) -> np.ndarray:
  """Draws n ids in 1..k from a Dirichlet-skewed distribution."""
  probs = rng.dirichlet(np.ones(k))
  ids = rng.choice(k, size=n, p=probs) + 1
  if shift is not None:
    shifted = rng.dirichlet(np.ones(k) * 0.5)
    alt = rng.choice(k, size=n, p=shifted) + 1
    ids = np.where(shift, alt, ids)
  return ids.astype(np.int32)


def _field_vectors(rng: np.random.Generator, vocab: int, dim: int, scale: float) -> np.ndarray:
  vecs = rng.normal(0.0, scale, size=(vocab, dim))
  vecs[0] = 0.0
  return vecs


def make_synthetic(spec: SyntheticSpec = SyntheticSpec()) -> Dataset:
  """Generates the synthetic cold-start data set.

  Args:
    spec: sizes, strengths and seed.

  Returns:
    A `Dataset` with user/item cold flags and, in ``extras``, the ground truth:
    ``user_pref`` [U, d], ``item_vec`` [I, d], ``user_bias`` [U], ``item_bias``
    [I], ``thresholds`` [4] (raw-score cut points between rating values).
  """
  if not 0.0 <= spec.feature_share <= 1.0:
    raise ValueError(f"feature_share must lie in [0, 1], got {spec.feature_share}")
  if spec.min_ratings < 1 or spec.max_ratings < spec.min_ratings:
    raise ValueError(f"need 1 <= min_ratings <= max_ratings, got {spec.min_ratings}, {spec.max_ratings}")
  rng = np.random.default_rng(spec.seed)
  u_n, i_n, d = spec.num_users, spec.num_items, spec.latent_dim
  user_is_cold = rng.random(u_n) < spec.cold_user_share
  item_is_cold = rng.random(i_n) < spec.cold_item_share
  n_cold_items, n_warm_items = int(item_is_cold.sum()), int((~item_is_cold).sum())
  if min(n_cold_items, n_warm_items) < spec.max_ratings:
    raise ValueError("too few warm or cold items for max_ratings; raise num_items")

  feat_scale = np.sqrt(spec.feature_share)
  ind_scale = np.sqrt(1.0 - spec.feature_share)

  # Users: categorical fields; cold users come from a shifted distribution.
  user_cols, user_specs = {}, []
  p_feat = np.zeros((u_n, d))
  b_user = np.zeros(u_n)
  for name, k in USER_FIELDS:
    ids = _categorical(rng, u_n, k, user_is_cold)
    user_cols[name] = ids
    user_specs.append(FieldSpec(name, "categorical", vocab_size=k + 1))
    p_feat += _field_vectors(rng, k + 1, d, 1.0 / np.sqrt(len(USER_FIELDS)))[ids]
    b_user += _field_vectors(rng, k + 1, 1, 0.3 / np.sqrt(len(USER_FIELDS)))[ids, 0]
  user_pref = feat_scale * p_feat + ind_scale * rng.normal(size=(u_n, d))
  user_bias = np.sqrt(spec.feature_share) * b_user + 0.3 * np.sqrt(1 - spec.feature_share) * rng.normal(size=u_n)

  # Items: two categorical fields and one multi-hot tag list.
  item_cols, item_specs = {}, []
  q_feat = np.zeros((i_n, d))
  b_item = np.zeros(i_n)
  n_fields = len(ITEM_FIELDS) + 1
  for name, k in ITEM_FIELDS:
    ids = _categorical(rng, i_n, k, None)
    item_cols[name] = ids
    item_specs.append(FieldSpec(name, "categorical", vocab_size=k + 1))
    q_feat += _field_vectors(rng, k + 1, d, 1.0 / np.sqrt(n_fields))[ids]
    b_item += _field_vectors(rng, k + 1, 1, 0.4 / np.sqrt(n_fields))[ids, 0]
  tag_name, n_tags, width = ITEM_TAGS
  n_item_tags = rng.integers(1, width + 1, size=i_n)
  tag_order = np.argsort(rng.random((i_n, n_tags)), axis=1)[:, :width] + 1
  tags = np.where(np.arange(width)[None, :] < n_item_tags[:, None], tag_order, 0).astype(np.int32)
  item_cols[tag_name] = tags
  item_specs.append(FieldSpec(tag_name, "multi", vocab_size=n_tags + 1, width=width))
  tag_vecs = _field_vectors(rng, n_tags + 1, d, 1.0 / np.sqrt(n_fields))
  tag_bias = _field_vectors(rng, n_tags + 1, 1, 0.4 / np.sqrt(n_fields))[:, 0]
  q_feat += tag_vecs[tags].sum(1) / n_item_tags[:, None]
  b_item += tag_bias[tags].sum(1) / n_item_tags
  item_vec = feat_scale * q_feat + ind_scale * rng.normal(size=(i_n, d))
  item_bias = np.sqrt(spec.feature_share) * b_item + 0.4 * np.sqrt(1 - spec.feature_share) * rng.normal(size=i_n)

  # Who rates what: popularity-weighted sampling without replacement
  # (Gumbel top-k), separately among warm and among cold items.
  popularity = rng.zipf(1.6, size=i_n).clip(max=50).astype(np.float64)
  users, items = [], []
  for pool in (np.flatnonzero(~item_is_cold), np.flatnonzero(item_is_cold)):
    counts = rng.integers(spec.min_ratings, spec.max_ratings + 1, size=u_n)
    keys = np.log(popularity[pool])[None, :] + rng.gumbel(size=(u_n, len(pool)))
    order = np.argsort(-keys, axis=1)
    chosen = np.arange(len(pool))[None, :] < counts[:, None]
    rows, cols = np.nonzero(chosen)
    users.append(rows)
    items.append(pool[order[rows, cols]])
  user = np.concatenate(users)
  item = np.concatenate(items)
  # Interleave randomly so no code can rely on the order of generation.
  perm = rng.permutation(len(user))
  user, item = user[perm], item[perm]

  scale = 1.0 / np.sqrt(d)
  raw = (user_bias[user] + item_bias[item] + scale * np.einsum("nd,nd->n", user_pref[user], item_vec[item])
         + spec.noise * rng.normal(size=len(user)))
  thresholds = np.quantile(raw, np.cumsum(_RATING_SHARES)[:-1])
  rating = (np.searchsorted(thresholds, raw) + 1).astype(np.float32)
  timestamp = np.arange(len(user), dtype=np.int64)

  return Dataset(
      name="synthetic",
      interactions=Interactions(user, item, rating, timestamp),
      users=FeatureTable(tuple(user_specs), user_cols),
      items=FeatureTable(tuple(item_specs), item_cols),
      rating_scale=(1.0, 5.0),
      user_is_cold=user_is_cold,
      item_is_cold=item_is_cold,
      extras={
          "user_pref": user_pref.astype(np.float32),
          "item_vec": item_vec.astype(np.float32),
          "user_bias": user_bias.astype(np.float32),
          "item_bias": item_bias.astype(np.float32),
          "raw_score": raw.astype(np.float32),
          "thresholds": thresholds.astype(np.float32),
      },
  )
