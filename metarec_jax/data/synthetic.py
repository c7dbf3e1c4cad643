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

`make_scaled` is a second generator, for benchmarks at scale: data shaped like
MovieLens-25M (``ml-25m``: about 162k users, 59k items, 25M half-star ratings
0.5..5, at least 20 per user) or like Amazon reviews (``amazon``: 1M users,
500k items, 20M implicit interactions, most users with a handful). Per-user
history lengths are heavy-tailed (a floor plus log-normal shares of the rest),
items are drawn by a Zipf popularity, and every step is vectorised numpy in
O(interactions) time and memory (never O(users x items)). ``scale`` shrinks a
preset (users and interactions by ``scale``, items by ``sqrt(scale)``, so the
per-user history stays as long as in the full data set), and explicit sizes
override it (`ScaledSpec`, `scaled_spec`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

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


# --------------------------------------------------------------------------- data sets at scale

# Share of each half-star rating 0.5, 1.0, ..., 5.0 in MovieLens-25M (rounded).
_HALF_STAR_SHARES = np.array([0.016, 0.031, 0.016, 0.066, 0.050, 0.196, 0.126, 0.266, 0.085, 0.148])
SCALED_GENRES = 20  # genres of the scaled generator's items (multi-hot, up to 3 per item)


@dataclasses.dataclass(frozen=True)
class ScaledSpec:
  """Shape of a data set from `make_scaled`.

  Attributes:
    name: data set name (``Dataset.name``).
    num_users: number of users.
    num_items: number of items.
    num_interactions: interactions to draw; the result has this many unless
      the per-user cap (``max_share`` of the items) clips the longest histories.
    min_per_user: least interactions per user (ML-25M: 20).
    length_sigma: log-normal sigma of the per-user shares above the floor; larger
      is heavier-tailed (median / mean history falls as it grows).
    popularity: Zipf exponent of item popularity (weight of the r-th most
      popular item ~ r ** -popularity).
    max_share: most items one user may have, as a share of the catalogue.
    feedback: ``rating`` (half stars 0.5..5, ML-25M's shares) or ``implicit``
      (every interaction is a positive with value 1).
    latent_dim: latent dimension of the rating model.
    noise: rating noise before quantisation.
    seed: generator seed.
  """

  name: str = "ml-25m"
  num_users: int = 162_541
  num_items: int = 59_047
  num_interactions: int = 25_000_095
  min_per_user: int = 20
  length_sigma: float = 1.4
  popularity: float = 1.0
  max_share: float = 0.5
  feedback: Literal["rating", "implicit"] = "rating"
  latent_dim: int = 8
  noise: float = 0.5
  seed: int = 0


SCALED_PRESETS: dict[str, ScaledSpec] = {
    # MovieLens-25M: 162,541 users, 59,047 rated movies, 25,000,095 ratings, >= 20 each, median ~71.
    "ml-25m": ScaledSpec(),
    # Amazon reviews (implicit): 1M users, 500k items, 20M interactions, median history of a few.
    "amazon": ScaledSpec(name="amazon", num_users=1_000_000, num_items=500_000, num_interactions=20_000_000,
                         min_per_user=1, length_sigma=1.9, popularity=0.9, feedback="implicit"),
}


def scaled_spec(kind: str, scale: float = 1.0, seed: int = 0, **sizes) -> ScaledSpec:
  """A preset of `SCALED_PRESETS`, shrunk by ``scale``, with explicit overrides.

  Users and interactions are multiplied by ``scale``, items by ``sqrt(scale)``
  (so a user's history keeps its length and the data stays sparse); then any
  ``sizes`` keyword (a `ScaledSpec` field) replaces the result's.

  Raises:
    KeyError: unknown ``kind``.
    ValueError: ``scale`` not in (0, 1].
  """
  if kind not in SCALED_PRESETS:
    raise KeyError(f"unknown scaled data set {kind!r}; known: {sorted(SCALED_PRESETS)}")
  if not 0.0 < scale <= 1.0:
    raise ValueError(f"scale must lie in (0, 1], got {scale}")
  base = SCALED_PRESETS[kind]
  spec = dataclasses.replace(base, num_users=max(1, round(base.num_users * scale)),
                             num_items=max(2, round(base.num_items * math.sqrt(scale))),
                             num_interactions=max(1, round(base.num_interactions * scale)), seed=seed)
  return dataclasses.replace(spec, **sizes)


def history_lengths(spec: ScaledSpec, rng: np.random.Generator) -> np.ndarray:
  """Per-user interaction counts: the floor plus log-normal shares of the rest, capped.

  The shares are rounded down and the remainder handed to the largest
  fractional parts, so the counts sum to ``num_interactions`` exactly unless
  the cap clips some.
  """
  u = spec.num_users
  cap = max(spec.min_per_user, int(spec.max_share * spec.num_items))
  extra = spec.num_interactions - u * spec.min_per_user
  if extra < 0:
    raise ValueError(f"num_interactions={spec.num_interactions:,} is below num_users x min_per_user = "
                     f"{u * spec.min_per_user:,}")
  w = rng.lognormal(0.0, spec.length_sigma, size=u)
  share = w / w.sum() * extra
  counts = np.floor(share).astype(np.int64)
  rest = extra - int(counts.sum())
  if rest:
    counts[np.argpartition(counts - share, rest - 1)[:rest]] += 1
  return np.minimum(counts + spec.min_per_user, cap)


def _draw_items(spec: ScaledSpec, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Sorted unique keys ``user * num_items + item``, ``counts[u]`` distinct items per user.

  Items are drawn with replacement from the popularity law; repeated pairs
  are dropped and the shortfall redrawn (from the popularity law twice, then
  uniformly, which quickly fills the longest histories).
  """
  n_items = spec.num_items
  pop = np.arange(1, n_items + 1, dtype=np.float64) ** -spec.popularity
  cdf = np.cumsum(pop[rng.permutation(n_items)])  # popular items anywhere in the id range
  cdf /= cdf[-1]
  keys = np.zeros(0, np.int64)
  need = counts.astype(np.int64)
  for attempt in range(64):
    if not need.any():
      return keys
    user = np.repeat(np.arange(len(counts), dtype=np.int64), need)
    if attempt < 2:
      item = np.searchsorted(cdf, rng.random(len(user)), side="right").clip(max=n_items - 1)
    else:
      item = rng.integers(0, n_items, size=len(user))
    new = np.sort(user * n_items + item)
    new = new[np.concatenate([[True], new[1:] != new[:-1]])]  # np.unique, without its hashing pass
    if len(keys):
      pos = np.searchsorted(keys, new)
      seen = keys[pos.clip(max=len(keys) - 1)] == new
      new, pos = new[~seen], pos[~seen]
      keys = np.insert(keys, pos, new)
    else:
      keys = new
    need = counts - np.bincount(keys // n_items, minlength=len(counts))
  raise RuntimeError("make_scaled: could not draw distinct items for every user; raise num_items")


def make_scaled(spec: ScaledSpec | str = "ml-25m", scale: float = 1.0, seed: int = 0) -> Dataset:
  """Generates a data set shaped like MovieLens-25M or Amazon reviews, at any scale.

  Args:
    spec: a `ScaledSpec`, or a preset name of `SCALED_PRESETS` shrunk by
      ``scale`` with ``seed`` (`scaled_spec`).
    scale: with a preset name, the share of the full size.
    seed: with a preset name, the generator seed.

  Returns:
    A `Dataset` with interactions grouped by user (items ascending within a
    user, as in ML-25M's ``ratings.csv``), timestamps, one constant user field
    (ML-25M has no user features), item fields ``genre`` (multi-hot) and
    ``year``, and ``item_year``. Explicit data has half-star ratings on
    ``(0.5, 5.0)``; implicit data has value 1 and ``feedback="implicit"``.
    ``extras`` holds the per-user ``history_length`` drawn.
  """
  if isinstance(spec, str):
    spec = scaled_spec(spec, scale, seed)
  rng = np.random.default_rng(spec.seed)
  counts = history_lengths(spec, rng)
  keys = _draw_items(spec, counts, rng)
  user = (keys // spec.num_items).astype(np.int32)
  item = (keys % spec.num_items).astype(np.int32)
  del keys
  n = len(user)

  # Timestamps: each user rates over a span of their own between 1995 and 2019.
  t0, t1 = 788_918_400, 1_574_000_000
  start = rng.integers(t0, t1, size=spec.num_users)
  span = ((t1 - start) * rng.random(spec.num_users)).astype(np.int64)
  timestamp = start[user] + (rng.random(n) * span[user]).astype(np.int64)

  # Items: up to 3 genres and a release year, newer years more common.
  genre_n = rng.integers(1, 4, size=spec.num_items)
  genre_ids = rng.integers(1, SCALED_GENRES + 1, size=(spec.num_items, 3))
  genre = np.where(np.arange(3)[None, :] < genre_n[:, None], genre_ids, 0).astype(np.int32)
  item_year = (2019 - np.minimum(rng.exponential(15.0, size=spec.num_items), 100)).astype(np.int32)
  year_vocab = int(item_year.max() - item_year.min()) + 2
  item_cols = {"genre": genre, "year": (item_year - item_year.min() + 1).astype(np.int32)}
  item_specs = (FieldSpec("genre", "multi", vocab_size=SCALED_GENRES + 1, width=3),
                FieldSpec("year", "categorical", vocab_size=year_vocab))
  users = FeatureTable((FieldSpec("user_constant", "categorical", vocab_size=2),),
                       {"user_constant": np.ones(spec.num_users, np.int32)})
  items = FeatureTable(item_specs, item_cols)

  if spec.feedback == "implicit":
    inter = Interactions(user, item, np.ones(n, np.float32), timestamp)
    return Dataset(name=spec.name, interactions=inter, users=users, items=items, rating_scale=(0.0, 1.0),
                   item_year=item_year, feedback="implicit", interacted=inter,
                   extras={"history_length": counts.astype(np.int32)}, source=f"make_scaled {spec}")
  if spec.feedback != "rating":
    raise ValueError(f"feedback must be 'rating' or 'implicit', got {spec.feedback!r}")
  # Ratings: biases + latent match + noise, cut into half stars at ML-25M's shares (float32, in chunks).
  d = spec.latent_dim
  pref = rng.normal(size=(spec.num_users, d)).astype(np.float32) / np.float32(math.sqrt(d))
  vec = rng.normal(size=(spec.num_items, d)).astype(np.float32)
  b_user = rng.normal(0.0, 0.4, size=spec.num_users).astype(np.float32)
  b_item = rng.normal(0.0, 0.5, size=spec.num_items).astype(np.float32)
  raw = np.empty(n, np.float32)
  for lo in range(0, n, 1 << 21):
    u, i = user[lo:lo + (1 << 21)], item[lo:lo + (1 << 21)]
    raw[lo:lo + len(u)] = b_user[u] + b_item[i] + np.einsum("nd,nd->n", pref[u], vec[i])
  raw += rng.normal(0.0, spec.noise, size=n).astype(np.float32)
  probe = raw if n <= 1 << 22 else raw[rng.integers(0, n, size=1 << 22)]
  thresholds = np.quantile(probe, np.cumsum(_HALF_STAR_SHARES)[:-1]).astype(np.float32)
  rating = (np.searchsorted(thresholds, raw) + 1).astype(np.float32) * np.float32(0.5)
  del raw
  return Dataset(name=spec.name, interactions=Interactions(user, item, rating, timestamp), users=users,
                 items=items, rating_scale=(0.5, 5.0), item_year=item_year,
                 extras={"history_length": counts.astype(np.int32), "thresholds": thresholds},
                 source=f"make_scaled {spec}")
