"""Data set registry: ``data.name`` -> a loader taking the ``config.data`` block."""

from __future__ import annotations

from typing import Callable

import ml_collections

from metarec_jax.data.interactions import Dataset
from metarec_jax.data.synthetic import SyntheticSpec, make_synthetic

Loader = Callable[[ml_collections.ConfigDict], Dataset]

DATASETS: dict[str, Loader] = {
    "synthetic": lambda d: make_synthetic(SyntheticSpec(**d.synthetic.to_dict())),
}


def register(name: str, loader: Loader) -> None:
  """Adds a data set loader under ``name``."""
  DATASETS[name] = loader


def load_dataset(data_cfg: ml_collections.ConfigDict) -> Dataset:
  """Loads the data set named by ``data.name``.

  Raises:
    KeyError: unknown name (the message lists the known ones).
  """
  if data_cfg.name not in DATASETS:
    raise KeyError(f"data.name: unknown data set {data_cfg.name!r}; known: {sorted(DATASETS)}")
  return DATASETS[data_cfg.name](data_cfg)
