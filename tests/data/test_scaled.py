"""The scaled generators (`make_scaled`): tiny shapes, heavy tails, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metarec_jax.data.synthetic import SCALED_PRESETS, ScaledSpec, make_scaled, scaled_spec


def _pairs_unique(d) -> bool:
  key = d.interactions.user.astype(np.int64) * d.num_items + d.interactions.item
  return len(np.unique(key)) == len(key)


def test_ml25m_shape_at_a_thousandth():
  d = make_scaled("ml-25m", scale=1e-3, seed=0)
  counts = np.bincount(d.interactions.user, minlength=d.num_users)
  assert d.num_users == 163 and d.num_items == round(59_047 * 1e-3 ** 0.5)
  assert 24_000 <= len(d.interactions) <= 25_000  # 25M x 1e-3, a few clipped by the per-user cap
  assert counts.min() >= 20 and counts.max() <= d.num_items // 2
  assert counts.max() > 5 * np.median(counts), "history lengths should be heavy-tailed"
  assert set(np.unique(d.interactions.rating)) == set(np.arange(1, 11) / 2)
  assert d.rating_scale == (0.5, 5.0) and d.feedback == "rating"
  assert _pairs_unique(d)
  # Popularity skew: the top 1% of items take far more than 1% of the ratings.
  per_item = np.sort(np.bincount(d.interactions.item, minlength=d.num_items))[::-1]
  assert per_item[:max(1, d.num_items // 100)].sum() > 0.05 * len(d.interactions)
  assert d.items.columns["genre"].shape == (d.num_items, 3) and d.users.num_rows == d.num_users


def test_amazon_is_implicit_and_mostly_short():
  d = make_scaled("amazon", scale=1e-3, seed=0)
  counts = np.bincount(d.interactions.user, minlength=d.num_users)
  assert (d.num_users, len(d.interactions)) == (1000, 20_000)
  assert d.feedback == "implicit" and (d.interactions.rating == 1).all() and d.interacted is d.interactions
  assert counts.min() >= 1 and np.median(counts) <= 6 and counts.max() > 20 * np.median(counts)
  assert _pairs_unique(d)


def test_same_seed_same_data_other_seed_other_data():
  spec = dataclasses.replace(scaled_spec("ml-25m", 1e-3), num_users=50, num_interactions=2_000)
  a, b = make_scaled(spec), make_scaled(spec)
  c = make_scaled(dataclasses.replace(spec, seed=1))
  for name in ("user", "item", "rating", "timestamp"):
    np.testing.assert_array_equal(getattr(a.interactions, name), getattr(b.interactions, name))
  assert not np.array_equal(a.interactions.item[:200], c.interactions.item[:200])


def test_scaled_spec_sizes_and_errors():
  spec = scaled_spec("amazon", 0.01, seed=3, num_items=777)
  assert (spec.num_users, spec.num_items, spec.num_interactions, spec.seed) == (10_000, 777, 200_000, 3)
  assert SCALED_PRESETS["ml-25m"].num_interactions == 25_000_095
  with pytest.raises(KeyError, match="known"):
    scaled_spec("ml-32m")
  with pytest.raises(ValueError, match="scale"):
    scaled_spec("ml-25m", 2.0)
  with pytest.raises(ValueError, match="below"):
    make_scaled(ScaledSpec(num_users=100, num_items=500, num_interactions=100))


def test_scaled_data_by_name_in_a_config():
  """data.name=scaled: the same experiment files on the ML-25M-shaped generator; bad settings named."""
  from metarec_jax import ConfigError, default_config, prepare
  c = default_config()
  c.data.name, c.data.protocol, c.eval.scenarios = "scaled", "random_users", ("user_cold",)
  c.data.scaled.scale = 0.001
  prep = prepare(c, 0)
  assert prep.data.num_users == 163 and prep.train.num_tasks > 0 and prep.test_batches["user_cold"].num_tasks > 0
  c.data.scaled.kind = "netflix"
  with pytest.raises(ConfigError, match="data.scaled: unknown scaled data set 'netflix'"):
    prepare(c, 0)
