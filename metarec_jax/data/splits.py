"""Cold-start scenarios: which ratings meta-train, validate and test.

A protocol turns a `Dataset` and a seed into a `ScenarioSplit`:

* ``train``: ratings of meta-training users on warm items only;
* ``valid``: ratings of held-out warm users on warm items (model selection);
* ``tests``: scenario name -> ratings, for the scenarios of the protocol.

Scenario names: ``warm`` (held-out warm users, warm items), ``user_cold``
(cold users, warm items), ``item_cold`` (warm users, cold items),
``user_item_cold`` (cold users, cold items); ``cold`` is the item-cold
scenario of the full-ranking protocol ``cold_items_ranking``
(`split_cold_items_ranking`), whose ``warm`` scenario ranks the warm items.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarec_jax.data.interactions import Dataset, Interactions

MELU_SCENARIOS = ("warm", "user_cold", "item_cold", "user_item_cold")
SCENARIOS = MELU_SCENARIOS + ("cold",)


@dataclasses.dataclass
class ScenarioSplit:
  """Ratings per role.

  Attributes:
    train: meta-training ratings.
    valid: validation ratings (model selection only).
    tests: scenario name -> test ratings.
    notes: human-readable remarks on how the split was made.
    catalogues: full-ranking protocols only (``cold_items_ranking``): set
      name (``valid``, a scenario, ``valid_<scenario>``) -> the item ids each
      of its users ranks in full. ``None``: the task protocols, whose query
      is split out of each user's own ratings.
    seen: full-ranking protocols: every training interaction, positive or
      not (the negative sampler's seen set and the items each user's ranking
      excludes); ``None`` elsewhere.
    extra_valid: full-ranking protocols: further validation sets by name
      (``valid_warm``), selected on with ``eval.selection=per_scenario``.
  """

  train: Interactions
  valid: Interactions
  tests: dict[str, Interactions]
  notes: tuple[str, ...] = ()
  catalogues: dict[str, np.ndarray] | None = None
  seen: Interactions | None = None
  extra_valid: dict[str, Interactions] = dataclasses.field(default_factory=dict)


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
  if data.scenarios is None or any(s not in data.scenarios for s in MELU_SCENARIOS):
    raise ValueError(f"protocol melu_states needs MeLU's four state files; data set {data.name!r} "
                     "has none (use protocol temporal or random_users)")
  return {s: filter_users(data.scenarios[s], min_ratings, max_ratings) for s in MELU_SCENARIOS}


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


# ----------------------------------------------------------------------------- the LLM-era item-cold benchmark

COLD_ITEM_SHARE = 0.2


def _pair_keys(inter: Interactions, num_items: int) -> np.ndarray:
  return inter.user.astype(np.int64) * np.int64(num_items) + inter.item.astype(np.int64)


def split_cold_items_ranking(data: Dataset, seed: int, *, valid_share: float = 0.1, warm_test_share: float = 0.1,
                             cold_item_share: float = COLD_ITEM_SHARE, **unused) -> ScenarioSplit:
  """The item-cold full-ranking benchmark of ALDI, LLM-InS / ColdLLM and DropoutNet's successors.

  Seeded: a ``cold_item_share`` (default 20%) of the items that have any
  interaction become *cold*, split 1 : 1 by items into cold-validation and
  cold-test items (the extra item of an odd count goes to the test). Every
  interaction on a cold item is held out. The interactions on the other
  (*warm*) items are split at random per interaction into training,
  validation and test, ``1 - valid_share - warm_test_share`` :
  ``valid_share`` : ``warm_test_share`` (8 : 1 : 1 by default; the counts are
  rounded, the test takes the rest).

  Roles (each user's ranking is over a whole catalogue, see `catalogues`):

  * ``train``: the warm training positives, the only ratings that train a
    model, its item ids, item statistics and popularity counts;
  * ``valid``: the cold-validation items' positives; their users rank the
    cold-validation items (model selection);
  * ``tests["cold"]``: the cold-test items' positives, ranked over the
    cold-test items; ``tests["warm"]``: the warm test positives, ranked over
    every warm item except the user's training items;
  * ``extra_valid["valid_warm"]``: the warm validation positives, ranked like
    the warm test (selection for ``warm`` with ``eval.selection=per_scenario``).

  Positives: with ``data.feedback=implicit`` the data set holds the
  interactions with value >= ``data.positive_threshold`` and keeps every
  interaction in ``Dataset.interacted``; this protocol splits *all*
  interactions (items, pairs) and keeps the positives of each role, so a
  rating below the threshold is a training interaction the user's ranking
  excludes and the sampler never draws as a negative, but no positive. The
  published numbers (ALDI, LLM-InS) treat every rating as an interaction:
  set the threshold to the lowest rating (``experiments/cold_items_ml1m.py``
  does, ``data.positive_threshold=1``).

  Args:
    data: any data set (MeLU's ML-1M release, MovieLens, RecBole atomic files).
    seed: seed of the cold items and of the interaction split.
    valid_share: share of warm interactions for validation.
    warm_test_share: share of warm interactions for the warm test.
    cold_item_share: share of the interacted items that become cold
      (``data.cold_item_share``).
    **unused: options of other protocols (ignored).

  Returns:
    The `ScenarioSplit` with ``catalogues``, ``seen`` and ``extra_valid``.

  Raises:
    ValueError: a share out of range, or too few items for two cold halves.
  """
  _check_shares(valid_share, warm_test_share)
  if not 0.0 < cold_item_share < 1.0:
    raise ValueError(f"data.cold_item_share must lie in (0, 1), got {cold_item_share}")
  every = data.interacted if data.interacted is not None else data.interactions
  items = np.unique(every.item)
  n_cold = int(round(cold_item_share * len(items)))
  if n_cold < 2 or n_cold >= len(items):
    raise ValueError(f"protocol cold_items_ranking: data.cold_item_share={cold_item_share} of {len(items)} "
                     "interacted items leaves no two cold halves or no warm item; change data.cold_item_share")
  rng = np.random.default_rng([seed, 0xC01D])
  perm = rng.permutation(items)
  cold_valid, cold_test, warm = np.sort(perm[:n_cold // 2]), np.sort(perm[n_cold // 2:n_cold]), np.sort(perm[n_cold:])
  role_of_item = np.zeros(data.num_items, np.int8)  # 0 warm, 1 cold validation, 2 cold test
  role_of_item[cold_valid] = 1
  role_of_item[cold_test] = 2
  # Warm interactions: 0 train, 1 valid, 2 test, at random per interaction.
  warm_rows = np.flatnonzero(role_of_item[every.item] == 0)
  order = rng.permutation(warm_rows)
  n_valid = int(round(valid_share * len(order)))
  n_test = int(round(warm_test_share * len(order)))
  part = np.full(len(every), -1, np.int8)  # -1: on a cold item
  part[order[n_valid + n_test:]] = 0
  part[order[:n_valid]] = 1
  part[order[n_valid:n_valid + n_test]] = 2
  # The positives of each role: look each positive's pair up among all interactions.
  pos = data.interactions
  if pos is every:
    pos_part = part
  else:
    keys = _pair_keys(every, data.num_items)
    sort = np.argsort(keys, kind="stable")
    at = np.searchsorted(keys[sort], _pair_keys(pos, data.num_items))
    at = np.minimum(at, len(keys) - 1)
    found = keys[sort][at] == _pair_keys(pos, data.num_items)
    if not found.all():
      raise ValueError("protocol cold_items_ranking: a positive is missing from Dataset.interacted")
    pos_part = part[sort[at]]
  pos_role = role_of_item[pos.item]
  share = f"{1 - valid_share - warm_test_share:g}:{valid_share:g}:{warm_test_share:g}"
  notes = (f"cold_items_ranking: {n_cold} of {len(items)} items cold (share {cold_item_share:g}; "
           f"{len(cold_valid)} validation, {len(cold_test)} test, by items); warm items' interactions split "
           f"{share} per interaction; full ranking of each set's catalogue",)
  return ScenarioSplit(
      train=pos.subset((pos_role == 0) & (pos_part == 0)),
      valid=pos.subset(pos_role == 1),
      tests={"cold": pos.subset(pos_role == 2), "warm": pos.subset((pos_role == 0) & (pos_part == 2))},
      notes=notes,
      catalogues={"valid": cold_valid, "cold": cold_test, "warm": warm, "valid_warm": warm},
      seen=every.subset(part == 0),
      extra_valid={"valid_warm": pos.subset((pos_role == 0) & (pos_part == 1))},
  )


class UnknownProtocol(KeyError, ValueError):
  """An unknown ``data.protocol``.

  A `KeyError` (an unknown name, as before) and a `ValueError` (a bad config
  value: the command line prints it as one line); ``str`` is the message
  itself, without `KeyError`'s quotes.
  """

  def __init__(self, protocol: str):
    from metarec_jax.suggest import did_you_mean
    super().__init__(f"data.protocol: unknown protocol {protocol!r} (known: {', '.join(sorted(PROTOCOLS))})"
                     f"{did_you_mean(protocol, PROTOCOLS)}")

  def __str__(self) -> str:
    return str(self.args[0])


PROTOCOLS = {
    "cold_flags": split_cold_flags,
    "melu_states": split_melu_states,
    "temporal": split_temporal,
    "random_users": split_random_users,
    "cold_items_ranking": split_cold_items_ranking,
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
    UnknownProtocol: the protocol is unknown (a `KeyError`; the message lists the known ones).
  """
  if protocol not in PROTOCOLS:
    raise UnknownProtocol(protocol)
  options = {**getattr(data, "split_options", {}), **kwargs}
  return PROTOCOLS[protocol](data, seed, **options)


def scenario_pools(data: Dataset, protocol: str, **kwargs) -> dict[str, Interactions] | None:
  """The protocol's filtered scenarios before the warm hold-outs, or ``None``.

  ``None`` means the protocol has no such pools (``random_users``: its test
  users are themselves the hold-out).
  """
  if protocol not in PROTOCOLS:
    raise UnknownProtocol(protocol)
  if protocol not in POOLS:
    return None
  return POOLS[protocol](data, **{**getattr(data, "split_options", {}), **kwargs})
