"""Data set registry: ``data.name`` -> a loader taking the ``config.data`` block.

Real data sets read the directory ``data.path``:

* ``melu``: MeLU's ML-1M release (`melu.load_melu`), protocol ``melu_states``;
* ``movielens``: GroupLens ML-100K or ML-1M (`movielens.load_movielens`),
  protocols ``temporal`` and ``random_users``;
* ``recbole``: RecBole atomic files (`recbole.load_recbole`), protocol
  ``random_users`` (and ``temporal`` when the files have timestamps and years);
* ``lastfm``: HetRec 2011 Last.fm play counts and friends (`lastfm.load_lastfm`),
  implicit only, protocol ``random_users``.

``scaled`` generates data shaped like MovieLens-25M or Amazon reviews at any
share of their size (`synthetic.make_scaled`, ``data.scaled.kind`` /
``scale`` / ``seed``), protocols ``random_users`` and ``temporal``: the
same experiment files at 100× ML-1M without a download.

With ``data.feedback=implicit`` the loaded data set becomes positives only
(value >= ``data.positive_threshold``; `implicit.to_implicit`).

Every real loader also records the protocol options of ``config.data``
(``min_ratings``, ``max_ratings``, ``new_item_year``, ``new_user_quantile``)
in ``Dataset.split_options``, which `splits.make_split` passes on.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from metarec_jax.data.interactions import Dataset
from metarec_jax.data.synthetic import SyntheticSpec, make_synthetic

Loader = Callable[[ml_collections.ConfigDict], Dataset]


def reader_options(data_cfg: ml_collections.ConfigDict) -> dict:
  """The reader keyword arguments every real-data loader takes."""
  return dict(bad_rows=data_cfg.get("bad_rows", "error"), duplicates=data_cfg.get("duplicates", "last"))


def split_options(data_cfg: ml_collections.ConfigDict, defaults: dict) -> dict:
  """Protocol options from ``config.data`` over the loader's defaults.

  ``max_ratings`` and ``new_item_year`` are taken only when set (> 0); 0 keeps
  the protocol's or the loader's default (100, and the data set's year).
  """
  out = dict(defaults)
  out["min_ratings"] = int(data_cfg.get("min_ratings", 13))
  for key in ("max_ratings", "new_item_year"):
    if data_cfg.get(key, 0) > 0:
      out[key] = int(data_cfg[key])
  out["new_user_quantile"] = float(data_cfg.get("new_user_quantile", 0.8))
  return out


def _require_path(data_cfg: ml_collections.ConfigDict) -> str:
  if not data_cfg.get("path", ""):
    raise FileNotFoundError(f"data.name={data_cfg.name!r} reads a directory: set data.path, e.g. "
                            f"--set data.path=DIR")
  return data_cfg.path


def _with_options(data: Dataset, data_cfg: ml_collections.ConfigDict) -> Dataset:
  return dataclasses.replace(data, split_options=split_options(data_cfg, data.split_options))


def _melu(data_cfg: ml_collections.ConfigDict) -> Dataset:
  from metarec_jax.data.melu import load_melu
  return _with_options(load_melu(_require_path(data_cfg), **reader_options(data_cfg)), data_cfg)


def _movielens(data_cfg: ml_collections.ConfigDict) -> Dataset:
  from metarec_jax.data.movielens import load_movielens
  return _with_options(load_movielens(_require_path(data_cfg), **reader_options(data_cfg)), data_cfg)


def _recbole(data_cfg: ml_collections.ConfigDict) -> Dataset:
  from metarec_jax.data.recbole import load_recbole
  scale = tuple(data_cfg.get("rating_scale", ()))
  return _with_options(load_recbole(_require_path(data_cfg), rating_scale=scale, **reader_options(data_cfg)),
                       data_cfg)


def _lastfm(data_cfg: ml_collections.ConfigDict) -> Dataset:
  from metarec_jax.data.lastfm import load_lastfm
  return _with_options(load_lastfm(_require_path(data_cfg), **reader_options(data_cfg)), data_cfg)


def _scaled(data_cfg: ml_collections.ConfigDict) -> Dataset:
  from metarec_jax.data.synthetic import make_scaled
  s = data_cfg.scaled
  try:
    data = make_scaled(str(s.kind), float(s.scale), int(s.seed))
  except (KeyError, ValueError) as e:
    raise KeyError(f"data.scaled: {e.args[0]}") from None
  return _with_options(data, data_cfg)


DATASETS: dict[str, Loader] = {
    "synthetic": lambda d: make_synthetic(SyntheticSpec(**d.synthetic.to_dict())),
    "melu": _melu,
    "movielens": _movielens,
    "recbole": _recbole,
    "lastfm": _lastfm,
    "scaled": _scaled,
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
  data = DATASETS[data_cfg.name](data_cfg)
  if data_cfg.get("feedback", "rating") == "implicit":
    from metarec_jax.data.implicit import to_implicit
    data = to_implicit(data, float(data_cfg.get("positive_threshold", 4.0)))
  return data
