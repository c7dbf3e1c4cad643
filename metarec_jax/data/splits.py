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
                     warm_test_share: float = 0.1) -> ScenarioSplit:
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


PROTOCOLS = {"cold_flags": split_cold_flags}


def make_split(data: Dataset, protocol: str, seed: int, **kwargs) -> ScenarioSplit:
  """Applies the named protocol.

  Raises:
    KeyError: the protocol is unknown (the message lists the known ones).
  """
  if protocol not in PROTOCOLS:
    raise KeyError(f"unknown protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
  return PROTOCOLS[protocol](data, seed, **kwargs)
