"""``metarec data info`` / ``metarec data download``: what a data folder holds.

`dataset_info` loads a folder (format detected or given), applies a protocol
and counts, per scenario, the tasks (users) and ratings after the protocol's
filter and before the warm hold-outs; the seeded split's roles come beside.
The ``metarec data`` commands are defined in `metarec_jax.cli.data`.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import ml_collections
import numpy as np

from metarec_jax.data.interactions import Interactions
from metarec_jax.data.parsing import MissingDataFile, check_folder

FORMATS = ("auto", "melu", "movielens", "recbole", "lastfm")
DEFAULT_PROTOCOL = {"melu": "melu_states", "movielens": "temporal", "recbole": "random_users",
                    "lastfm": "random_users"}


def detect_format(path: str | pathlib.Path) -> str:
  """``melu``, ``movielens``, ``recbole`` or ``lastfm`` by the files in ``path``.

  Raises:
    MissingDataFile: the folder holds none of the known layouts.
    DataError: ``path`` is a file, not a folder.
  """
  from metarec_jax.data import melu, movielens
  p = pathlib.Path(path)
  check_folder(p)
  if not p.is_dir():
    raise MissingDataFile(f"data directory {p} does not exist")
  if melu.is_melu_dir(p):
    return "melu"
  if movielens.variant(p):
    return "movielens"
  if any(p.glob("*.inter")):
    return "recbole"
  if (p / "user_artists.dat").is_file():
    return "lastfm"
  raise MissingDataFile(
      f"{p} holds no known data set: expected MeLU's release (warm_state.json, movies_extrainfos.dat; "
      f"metarec data download melu-ml1m --to {p}), MovieLens (u.data or ratings.dat; metarec data "
      f"download ml-100k --to {p}), RecBole atomic files (tab-separated NAME.inter) or HetRec 2011 Last.fm "
      "(user_artists.dat, from grouplens.org/datasets/hetrec-2011)")


def data_config(path: str | pathlib.Path, fmt: str,
                overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The default ``config.data`` block for a folder, with ``KEY=VALUE`` overrides.

  Keys may be given with or without the ``data.`` prefix.
  """
  from metarec_jax import config as cfg_lib
  c = cfg_lib.default_config()
  c.data.name = fmt
  c.data.path = str(path)
  sets = [o if o.startswith("data.") else f"data.{o}" for o in overrides]
  return cfg_lib.apply_overrides(c, sets).data


def _counts(ratings: Interactions) -> dict[str, int]:
  return {"tasks": int(len(np.unique(ratings.user))), "ratings": int(len(ratings))}


def dataset_info(path: str | pathlib.Path, *, fmt: str = "auto", protocol: str | None = None,
                 seed: int = 0, overrides: Sequence[str] = ()) -> dict:
  """Loads a data folder and counts its scenarios under a protocol.

  Args:
    path: the data folder.
    fmt: one of `FORMATS`; ``auto`` detects it.
    protocol: a protocol of `splits.PROTOCOLS`; default: the format's own
      (``melu_states``, ``temporal``, ``random_users``).
    seed: seed of the split's hold-outs (only the ``split`` entry depends on it).
    overrides: ``KEY=VALUE`` settings of ``config.data`` (e.g. ``new_item_year=1997``).

  Returns:
    ``{"dataset", "users", "items", "ratings", "scenarios": {name: {"tasks",
    "ratings"}}, "protocol", "format", "path", "seed", "split", "notes"}``.
    ``scenarios`` counts after the protocol's filter and before the warm
    hold-outs (for ``random_users``, whose test users are the hold-out: the
    test scenario); ``split`` counts the seeded roles.
  """
  from metarec_jax.data import registry, splits
  if fmt not in FORMATS:
    raise ValueError(f"unknown format {fmt!r}; known: {FORMATS}")
  fmt = detect_format(path) if fmt == "auto" else fmt
  protocol = protocol or DEFAULT_PROTOCOL[fmt]
  d = data_config(path, fmt, overrides)
  data = registry.load_dataset(d)
  split = splits.make_split(data, protocol, seed, valid_share=d.valid_share,
                            warm_test_share=d.warm_test_share, cold_item_share=d.cold_item_share)
  pools = splits.scenario_pools(data, protocol)
  scenarios = pools if pools is not None else split.tests
  return {
      "dataset": data.name,
      "users": int(data.num_users),
      "items": int(data.num_items),
      "ratings": int(len(data.interactions)),
      "scenarios": {s: _counts(scenarios[s]) for s in splits.SCENARIOS if s in scenarios},
      "protocol": protocol,
      "format": fmt,
      "path": str(path),
      "seed": seed,
      "split": {"train": _counts(split.train), "valid": _counts(split.valid),
                **{f"test_{s}": _counts(r) for s, r in split.tests.items()}},
      "notes": list(data.notes) + list(split.notes),
  }


def format_info(info: dict) -> str:
  """The text `metarec data info` prints."""
  lines = [f"{info['dataset']} ({info['format']}, {info['path']}): {info['users']} users, "
           f"{info['items']} items, {info['ratings']} ratings",
           f"protocol {info['protocol']}: tasks and ratings per scenario after the filter, "
           "before the warm hold-outs",
           f"  {'scenario':<16}{'tasks':>8}{'ratings':>10}"]
  for name, c in info["scenarios"].items():
    lines.append(f"  {name:<16}{c['tasks']:>8}{c['ratings']:>10}")
  lines.append(f"split (seed {info['seed']}): " + ", ".join(
      f"{role} {c['tasks']} tasks / {c['ratings']} ratings" for role, c in info["split"].items()))
  if info["notes"]:
    lines.append("notes:")
    lines.extend(f"  - {n}" for n in info["notes"])
  return "\n".join(lines)
