"""Implicit feedback from ratings: the rating >= 4 rule on ML-100K and MeLU's ML-1M."""

from __future__ import annotations

import ml_collections
import numpy as np

from metarec_jax.data import load_dataset
from tests.conftest import data_dir
from tests.data.tiny_files import write_ml100k


def test_registry_makes_movielens_implicit_with_the_rating_rule(tmp_path):
  d = write_ml100k(tmp_path / "ml")
  cfg = ml_collections.ConfigDict(dict(name="movielens", path=str(d), feedback="implicit", positive_threshold=4.0))
  rated = load_dataset(ml_collections.ConfigDict(dict(name="movielens", path=str(d))))
  data = load_dataset(cfg)
  assert len(data.interactions) == int((rated.interactions.rating >= 4).sum()) > 0
  assert len(data.interacted) == len(rated.interactions)


def test_melu_release_as_implicit():
  path = str(data_dir("melu-ml1m"))
  rated = load_dataset(ml_collections.ConfigDict(dict(name="melu", path=path)))
  data = load_dataset(ml_collections.ConfigDict(dict(name="melu", path=path, feedback="implicit",
                                                     positive_threshold=4.0)))
  assert len(data.interactions) == int((rated.interactions.rating >= 4).sum())
  assert len(data.interacted) == len(rated.interactions) and data.feedback == "implicit"
  for s, r in rated.scenarios.items():
    assert len(data.scenarios[s]) == int((r.rating >= 4).sum())
    np.testing.assert_array_equal(data.scenarios[s].rating, 1.0)
