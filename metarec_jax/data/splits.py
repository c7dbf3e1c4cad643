"""Cold-start scenarios: which ratings meta-train, validate and test.

A protocol turns a `Dataset` and a seed into a `ScenarioSplit`:

* ``train``: ratings of meta-training users on warm items only;
* ``valid``: ratings of held-out warm users on warm items (model selection);
* ``tests``: scenario name -> ratings, for the scenarios of the protocol.

Scenario names: ``warm`` (held-out warm users, warm items), ``user_cold``
(cold users, warm items), ``item_cold`` (warm users, cold items),
``user_item_cold`` (cold users, cold items).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarec_jax.data.interactions import Dataset, Interactions

SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")


@dataclasses.dataclass
class ScenarioSplit:
  """Ratings per role.

  Attributes:
    train: meta-training ratings.
    valid: validation ratings (model selection only).
    tests: scenario name -> test ratings.
    notes: human-readable remarks on how the split was made.
  """

  train: Interactions
  valid: Interactions
  tests: dict[str, Interactions]
  notes: tuple[str, ...] = ()


def split_cold_flags(data: Dataset, seed: int, *, valid_share: float = 0.1,
                     warm_test_share: float = 0.1, **unused) -> ScenarioSplit:
  """Splits a data set whose users and items carry cold flags.

  Warm users are split (seeded) into meta-training, validation and warm-test
  users. Meta-training sees only meta-training users' ratings on warm items.
  ``item_cold`` holds the ratings of warm users (all of them: their cold-item
  ratings are never trained on) on cold items.

  Args:
    data: a data set with ``user_is_cold`` and ``item_is_cold``.
    seed: seed of the user hold-outs.
    valid_share: share of warm users held out for validation.
    warm_test_share: share of warm users held out as the ``warm`` scenario.
    **unused: options of other protocols (ignored).

  Returns:
    The `ScenarioSplit`.
  """
  if data.user_is_cold is None or data.item_is_cold is None:
    raise ValueError(f"data set {data.name!r} has no cold flags; use another protocol")
  if valid_share < 0 or warm_test_share < 0 or valid_share + warm_test_share >= 1:
    raise ValueError("valid_share and warm_test_share must be >= 0 and sum to < 1")
  rng = np.random.default_rng(seed)
  warm_users = np.flatnonzero(~data.user_is_cold)
  perm = rng.permutation(warm_users)
  n_valid = int(round(valid_share * len(perm)))
  n_test = int(round(warm_test_share * len(perm)))
  role = np.zeros(data.num_users, np.int8)  # 0 train, 1 valid, 2 warm test, 3 cold
  role[perm[:n_valid]] = 1
  role[perm[n_valid:n_valid + n_test]] = 2
  role[data.user_is_cold] = 3
  inter = data.interactions
  u_role = role[inter.user]
  i_cold = data.item_is_cold[inter.item]
  tests = {
      "warm": inter.subset((u_role == 2) & ~i_cold),
      "user_cold": inter.subset((u_role == 3) & ~i_cold),
      "item_cold": inter.subset((u_role < 3) & i_cold),
      "user_item_cold": inter.subset((u_role == 3) & i_cold),
  }
  return ScenarioSplit(
      train=inter.subset((u_role == 0) & ~i_cold),
      valid=inter.subset((u_role == 1) & ~i_cold),
      tests=tests,
      notes=("warm test users are held out from meta-training (not MeLU's reuse of training users)",),
  )


# ----------------------------------------------------------------------------- real-data protocols
#
# The papers' protocols keep, per scenario, the users with ``min_ratings`` to
# ``max_ratings`` ratings in that scenario (MeLU: 13..100, so that a query of 10
# leaves at least 3 support ratings). A protocol first builds the filtered
# scenario *pools* (what ``metarec data info`` counts); the seeded hold-outs of
# warm users for validation and the ``warm`` test then come from the warm pool.

MIN_RATINGS = 13
MAX_RATINGS = 100
NEW_ITEM_YEAR = 1998       # MeLU's ML-1M rule: movies released in or after 1998 are new
NEW_USER_QUANTILE = 0.8    # users whose first rating is after this quantile are new


def filter_users(ratings: Interactions, min_ratings: int = MIN_RATINGS,
                 max_ratings: int = MAX_RATINGS) -> Interactions:
  """Keeps the users with ``min_ratings`` to ``max_ratings`` ratings (0: no upper bound)."""
  if not len(ratings):
    return ratings
  counts = np.bincount(ratings.user)
  ok = counts >= min_ratings
  if max_ratings and max_ratings > 0:
    ok &= counts <= max_ratings
  return ratings.subset(ok[ratings.user])


def _check_shares(valid_share: float, test_share: float) -> None:
  if valid_share < 0 or test_share < 0 or valid_share + test_share >= 1:
    raise ValueError("valid_share and warm_test_share must be >= 0 and sum to < 1")


def hold_out_users(users: np.ndarray, seed: int, valid_share: float,
                   test_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Seeded split of ``users`` into (train, valid, test) user id arrays.

  The validation and test counts are ``round(share * len(users))``.
  """
  _check_shares(valid_share, test_share)
  perm = np.random.default_rng(seed).permutation(np.unique(users))
  n_valid = int(round(valid_share * len(perm)))
  n_test = int(round(test_share * len(perm)))
  return perm[n_valid + n_test:], perm[:n_valid], perm[n_valid:n_valid + n_test]


def _members(ratings: Interactions, users: np.ndarray) -> np.ndarray:
  """Boolean mask of the ratings whose user is in ``users``."""
  if not len(ratings):
    return np.zeros(0, bool)
  flags = np.zeros(max(int(ratings.user.max()), int(users.max()) if len(users) else 0) + 1, bool)
  flags[users] = True
  return flags[ratings.user]


def split_pools(pools: dict[str, Interactions], seed: int, *, valid_share: float = 0.1,
                warm_test_share: float = 0.1, notes: tuple[str, ...] = ()) -> ScenarioSplit:
  """Turns filtered scenario pools into a split by holding out warm users.

  A seeded ``valid_share`` of the warm pool's users become validation users
  and ``warm_test_share`` the ``warm`` test scenario; the rest meta-train.
  The other pools are test scenarios as they are.
  """
  warm = pools["warm"]
  train_u, valid_u, test_u = hold_out_users(warm.user, seed, valid_share, warm_test_share)
  tests = dict(pools)
  tests["warm"] = warm.subset(_members(warm, test_u))
  return ScenarioSplit(train=warm.subset(_members(warm, train_u)),
                       valid=warm.subset(_members(warm, valid_u)), tests=tests,
                       notes=notes + ("warm test users are held out from meta-training (MeLU evaluated "
                                      "its warm state on its training users; we do not)",))


def melu_pools(data: Dataset, *, min_ratings: int = MIN_RATINGS, max_ratings: int = MAX_RATINGS,
               **unused) -> dict[str, Interactions]:
  """MeLU's four state files as scenarios, each filtered to 13..100 ratings per user."""
  if data.scenarios is None or any(s not in data.scenarios for s in SCENARIOS):
    raise ValueError(f"protocol melu_states needs MeLU's four state files; data set {data.name!r} "
                     "has none (use protocol temporal or random_users)")
  return {s: filter_users(data.scenarios[s], min_ratings, max_ratings) for s in SCENARIOS}


def split_melu_states(data: Dataset, seed: int, *, valid_share: float = 0.1,
                      warm_test_share: float = 0.1, min_ratings: int = MIN_RATINGS,
                      max_ratings: int = MAX_RATINGS, **unused) -> ScenarioSplit:
  """MeLU's protocol on its ML-1M release (Lee et al., KDD 2019).

  The four state files are the scenarios ``warm``, ``user_cold``,
  ``item_cold`` and ``user_item_cold``; per scenario, users with
  ``min_ratings`` to ``max_ratings`` ratings are kept (MeLU: 13..100). The
  engine draws each test task's query (10 random ratings, seeded) and uses the
  rest as support. Meta-training uses warm users only: a seeded
  ``valid_share`` of the warm users is held out for validation and another
  ``warm_test_share`` as the ``warm`` test scenario.

  Args:
    data: a data set with ``scenarios`` (the MeLU loader sets them).
    seed: seed of the warm hold-outs.
    valid_share: share of warm users held out for validation.
    warm_test_share: share of warm users held out as the ``warm`` test.
    min_ratings: fewest ratings a user needs in a scenario.
    max_ratings: most ratings a user may have in a scenario (0: no bound).
    **unused: options of other protocols (ignored).
  """
  pools = melu_pools(data, min_ratings=min_ratings, max_ratings=max_ratings)
  return split_pools(pools, seed, valid_share=valid_share, warm_test_share=warm_test_share,
                     notes=(f"MeLU state files; users with {min_ratings}..{max_ratings or 'any'} "
                            "ratings per scenario",))


def temporal_flags(data: Dataset, *, new_item_year: int = NEW_ITEM_YEAR,
                   new_user_quantile: float = NEW_USER_QUANTILE) -> tuple[np.ndarray, np.ndarray, int]:
  """MeLU's rule on raw data: which users and items are new.

  Returns:
    ``(user_is_new, item_is_new, first-rating time threshold)``: items released
    in or after ``new_item_year`` are new (unknown years count as old); users
    whose first rating comes after the ``new_user_quantile`` quantile of the
    users' first-rating times are new.
  """
  inter = data.interactions
  if inter.timestamp is None:
    raise ValueError(f"protocol temporal needs rating timestamps; data set {data.name!r} has none "
                     "(for MeLU's release use protocol melu_states)")
  if data.item_year is None:
    raise ValueError(f"protocol temporal needs item release years; data set {data.name!r} has none")
  if not 0.0 < new_user_quantile < 1.0:
    raise ValueError(f"data.new_user_quantile must lie in (0, 1), got {new_user_quantile}")
  if new_item_year <= 0:
    raise ValueError(f"data.new_item_year must be a year, got {new_item_year}")
  first = np.full(data.num_users, np.iinfo(np.int64).max, np.int64)
  np.minimum.at(first, inter.user, inter.timestamp)
  rated = first < np.iinfo(np.int64).max
  threshold = int(np.quantile(first[rated], new_user_quantile, method="lower")) if rated.any() else 0
  user_new = rated & (first > threshold)
  item_new = np.asarray(data.item_year) >= new_item_year
  return user_new, item_new, threshold


def temporal_pools(data: Dataset, *, new_item_year: int = NEW_ITEM_YEAR,
                   new_user_quantile: float = NEW_USER_QUANTILE, min_ratings: int = MIN_RATINGS,
                   max_ratings: int = MAX_RATINGS, **unused) -> dict[str, Interactions]:
  """The four scenarios of `temporal_flags`, each filtered per user."""
  user_new, item_new, _ = temporal_flags(data, new_item_year=new_item_year,
                                         new_user_quantile=new_user_quantile)
  inter = data.interactions
  u_new, i_new = user_new[inter.user], item_new[inter.item]
  raw = {"warm": ~u_new & ~i_new, "user_cold": u_new & ~i_new, "item_cold": ~u_new & i_new,
         "user_item_cold": u_new & i_new}
  return {s: filter_users(inter.subset(m), min_ratings, max_ratings) for s, m in raw.items()}


def split_temporal(data: Dataset, seed: int, *, valid_share: float = 0.1, warm_test_share: float = 0.1,
                   new_item_year: int = NEW_ITEM_YEAR, new_user_quantile: float = NEW_USER_QUANTILE,
                   min_ratings: int = MIN_RATINGS, max_ratings: int = MAX_RATINGS,
                   **unused) -> ScenarioSplit:
  """MeLU's rule applied to raw MovieLens (ratings with timestamps, items with years).

  Items released in or after ``new_item_year`` are new; users whose first
  rating falls after the ``new_user_quantile`` quantile of first-rating times
  are new. The four scenarios follow (warm = old users on old items, ...), each
  filtered to ``min_ratings``..``max_ratings`` ratings per user; warm users are
  then held out for validation and the ``warm`` test as in `split_melu_states`.

  Args:
    data: a data set with timestamps and ``item_year``.
    seed: seed of the warm hold-outs.
    valid_share: share of warm users held out for validation.
    warm_test_share: share of warm users held out as the ``warm`` test.
    new_item_year: first release year of new items.
    new_user_quantile: quantile of the first-rating times after which users are new.
    min_ratings: fewest ratings a user needs in a scenario.
    max_ratings: most ratings a user may have in a scenario (0: no bound).
    **unused: options of other protocols (ignored).
  """
  user_new, item_new, threshold = temporal_flags(data, new_item_year=new_item_year,
                                                 new_user_quantile=new_user_quantile)
  pools = temporal_pools(data, new_item_year=new_item_year, new_user_quantile=new_user_quantile,
                         min_ratings=min_ratings, max_ratings=max_ratings)
  note = (f"new items: released in or after {new_item_year} ({int(item_new.sum())} items); new users: "
          f"first rating after t={threshold} (quantile {new_user_quantile}; {int(user_new.sum())} users); "
          f"users with {min_ratings}..{max_ratings or 'any'} ratings per scenario")
  return split_pools(pools, seed, valid_share=valid_share, warm_test_share=warm_test_share, notes=(note,))


def split_random_users(data: Dataset, seed: int, *, valid_share: float = 0.1,
                       warm_test_share: float = 0.1, min_ratings: int = MIN_RATINGS,
                       max_ratings: int = MAX_RATINGS, **unused) -> ScenarioSplit:
  """RecBole-MetaRec's protocol: users split at random into train / validation / test.

  Users with ``min_ratings``..``max_ratings`` ratings are kept and split
  (seeded) 8:1:1 by default: ``valid_share`` for validation, ``warm_test_share``
  as the test users. Test users are unseen in meta-training, so the one test
  scenario is ``user_cold``; items are shared between the roles.

  Args:
    data: any data set.
    seed: seed of the user split.
    valid_share: share of users for validation.
    warm_test_share: share of users for the test (scenario ``user_cold``).
    min_ratings: fewest ratings a user needs.
    max_ratings: most ratings a user may have (0: no bound).
    **unused: options of other protocols (ignored).
  """
  kept = filter_users(data.interactions, min_ratings, max_ratings)
  if not len(kept):
    raise ValueError(f"protocol random_users: no user of {data.name!r} has {min_ratings}.."
                     f"{max_ratings or 'any'} ratings")
  train_u, valid_u, test_u = hold_out_users(kept.user, seed, valid_share, warm_test_share)
  return ScenarioSplit(train=kept.subset(_members(kept, train_u)),
                       valid=kept.subset(_members(kept, valid_u)),
                       tests={"user_cold": kept.subset(_members(kept, test_u))},
                       notes=(f"random users {1 - valid_share - warm_test_share:g}:{valid_share:g}:"
                              f"{warm_test_share:g}; users with {min_ratings}..{max_ratings or 'any'} "
                              "ratings",))


def cold_flags_pools(data: Dataset, **unused) -> dict[str, Interactions]:
  """The scenarios of `split_cold_flags` before its warm hold-outs (no filter)."""
  if data.user_is_cold is None or data.item_is_cold is None:
    raise ValueError(f"data set {data.name!r} has no cold flags; use another protocol")
  inter = data.interactions
  u, i = data.user_is_cold[inter.user], data.item_is_cold[inter.item]
  return {"warm": inter.subset(~u & ~i), "user_cold": inter.subset(u & ~i),
          "item_cold": inter.subset(~u & i), "user_item_cold": inter.subset(u & i)}


PROTOCOLS = {
    "cold_flags": split_cold_flags,
    "melu_states": split_melu_states,
    "temporal": split_temporal,
    "random_users": split_random_users,
}

# Protocol -> its scenarios before the warm hold-outs (what `metarec data info` counts).
POOLS = {
    "cold_flags": cold_flags_pools,
    "melu_states": melu_pools,
    "temporal": temporal_pools,
}


def make_split(data: Dataset, protocol: str, seed: int, **kwargs) -> ScenarioSplit:
  """Applies the named protocol.

  The protocol gets ``data.split_options`` (set by the loader from
  ``config.data``) updated with ``kwargs``; it ignores options it does not use.

  Raises:
    KeyError: the protocol is unknown (the message lists the known ones).
  """
  if protocol not in PROTOCOLS:
    raise KeyError(f"unknown protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
  options = {**getattr(data, "split_options", {}), **kwargs}
  return PROTOCOLS[protocol](data, seed, **options)


def scenario_pools(data: Dataset, protocol: str, **kwargs) -> dict[str, Interactions] | None:
  """The protocol's filtered scenarios before the warm hold-outs, or ``None``.

  ``None`` means the protocol has no such pools (``random_users``: its test
  users are themselves the hold-out).
  """
  if protocol not in PROTOCOLS:
    raise KeyError(f"unknown protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
  if protocol not in POOLS:
    return None
  return POOLS[protocol](data, **{**getattr(data, "split_options", {}), **kwargs})
