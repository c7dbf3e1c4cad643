"""Item text -> sentence embeddings, cached as ``.npy``, added as a dense item field.

``metarec features text DATA_PATH --field plot --out FILE.npy`` embeds one
text per item with the MiniLM encoder (`models.text`) and writes

* ``FILE.npy``: ``float32 [num_items, 384]``, row ``r`` = item row ``r`` of the
  data set (the order of ``movies_extrainfos.dat``), L2-normalised;
* ``FILE.json``: the raw item id of every row, the text fields, the model and
  the source, so a cache built from other data is refused rather than
  silently misaligned.

An experiment adds the cache to the item table with `add_text_field` (the
engine does this for ``model.text_features = FILE.npy``): a dense field
``text_emb`` that ``model.item_fields`` can name. Several caches become
several fields: ``model.text_features = "plot_emb=PLOT.npy,title_emb=TITLE.npy"``
(`parse_text_features`). Vectors are scaled by ``sqrt(width)`` so their
entries have unit variance, like the other fields' embeddings at
initialisation.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Sequence

import numpy as np

from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec
from metarec_jax.data.melu import ITEM_COLUMNS, NA_VALUES, is_melu_dir
from metarec_jax.data.parsing import DataError, check_unique_ids, read_table, require

TEXT_FIELD = "text_emb"
TEXT_COLUMNS = ("title", "plot", "genre", "director", "writer", "actors", "rate", "released", "year")


def item_texts(data_path: str | pathlib.Path, fields: Sequence[str]) -> tuple[np.ndarray, list[str], int]:
  """One text per item of MeLU's ``movies_extrainfos.dat``, in file (= item row) order.

  Args:
    data_path: MeLU's ML-1M release folder.
    fields: columns joined with ". " (``title``, ``plot``, ``genre``, ...);
      a missing value ("N/A" and the like) is left out.

  Returns:
    ``(raw movie ids, texts, number of items with no text at all)``.

  Raises:
    DataError: not a MeLU folder, or an unknown field.
  """
  directory = pathlib.Path(data_path)
  if not is_melu_dir(directory):
    raise DataError(f"{directory}: text features need MeLU's release (movies_extrainfos.dat with title and "
                    "plot); fetch it with `metarec data download melu-ml1m --to DIR`")
  unknown = [f for f in fields if f not in TEXT_COLUMNS]
  if unknown or not fields:
    raise DataError(f"--field: unknown text field(s) {unknown or list(fields)}; choose from {TEXT_COLUMNS} "
                    "(comma-separated to join several)")
  path = require(directory, "movies_extrainfos.dat", "melu-ml1m")
  table = read_table(path, "::", ITEM_COLUMNS, encoding="utf-8")
  raw_ids = table.ints("movie_id")
  check_unique_ids(raw_ids, table, "movie_id")
  na = set(NA_VALUES)
  columns = [table.strings(f).tolist() for f in fields]
  texts = [". ".join(v for v in values if v not in na) for values in zip(*columns)]
  return raw_ids, texts, sum(1 for t in texts if not t)


def _meta_path(out: pathlib.Path) -> pathlib.Path:
  return out.with_suffix(".json")


def embed_item_text(data_path: str | pathlib.Path, fields: Sequence[str], out: str | pathlib.Path, *,
                    model: str = "all-MiniLM-L6-v2", batch_size: int = 64, dtype: str = "float32",
                    progress: bool = True) -> dict:
  """Embeds every item's text and writes ``out`` (``.npy``) and its ``.json`` description.

  Returns:
    The description written to the ``.json`` file (plus the seconds taken).
  """
  from metarec_jax.models.text import TextEncoder  # the text extra is needed only here

  out = pathlib.Path(out)
  if out.suffix != ".npy":
    raise ValueError(f"--out must end in .npy, got {out}")
  raw_ids, texts, empty = item_texts(data_path, fields)
  start = time.perf_counter()
  encoder = TextEncoder.from_pretrained(model, dtype=dtype)
  vectors = encoder.encode(texts, batch_size=batch_size, progress=progress)
  seconds = time.perf_counter() - start
  out.parent.mkdir(parents=True, exist_ok=True)
  np.save(out, vectors.astype(np.float32))
  meta = {"model": model, "fields": list(fields), "data_path": str(pathlib.Path(data_path).absolute()),
          "rows": len(texts), "width": int(vectors.shape[1]), "empty_texts": empty, "dtype": dtype,
          "item_raw_ids": [int(i) for i in raw_ids]}
  _meta_path(out).write_text(json.dumps(meta))
  return {**meta, "seconds": seconds}


def load_text_features(path: str | pathlib.Path, data: Dataset) -> np.ndarray:
  """Reads a cache written by `embed_item_text` and checks it fits ``data``'s item rows.

  Raises:
    FileNotFoundError: no such file.
    DataError: wrong shape, or its item ids differ from the data set's.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"text features {path} do not exist; make them with "
                            f"`metarec features text DATA_PATH --field plot --out {path}`")
  vectors = np.load(path, allow_pickle=False)  # a .npy of numbers: never unpickle a file
  if vectors.ndim != 2 or len(vectors) != data.num_items:
    raise DataError(f"{path}: shape {vectors.shape} does not fit {data.num_items} items of {data.name}")
  meta_path = _meta_path(path)
  if meta_path.is_file() and data.item_raw_ids is not None:
    ids = np.asarray(json.loads(meta_path.read_text())["item_raw_ids"])
    if len(ids) != len(data.item_raw_ids) or (ids != np.asarray(data.item_raw_ids)).any():
      bad = int(np.flatnonzero(ids != np.asarray(data.item_raw_ids))[0]) if len(ids) == data.num_items else 0
      raise DataError(f"{path}: made for other items than {data.name}'s (row {bad}: item "
                      f"{ids[bad] if len(ids) > bad else '?'} vs {data.item_raw_ids[bad]}); rebuild it")
  return vectors.astype(np.float32)


def parse_text_features(spec: str) -> list[tuple[str, str]]:
  """``model.text_features`` as ``[(field name, .npy path), ...]``.

  ``"FILE.npy"`` is one field named ``text_emb``; ``"NAME=FILE.npy,NAME2=FILE2.npy"``
  names each field.

  Raises:
    ValueError: an entry without a path, a field name that is not an identifier,
      a name given twice, or a bare path beside named ones.
  """
  entries = [e.strip() for e in spec.split(",") if e.strip()]
  if len(entries) == 1 and "=" not in entries[0]:
    return [(TEXT_FIELD, entries[0])]
  out = []
  for entry in entries:
    name, sep, path = entry.partition("=")
    name, path = name.strip(), path.strip()
    if not sep or not path or not name.isidentifier():
      raise ValueError(f"model.text_features: {entry!r} is not NAME=FILE.npy (write one path, or "
                       "comma-separated NAME=FILE.npy pairs with identifier names)")
    if name in (n for n, _ in out):
      raise ValueError(f"model.text_features: field {name!r} is named twice")
    out.append((name, path))
  return out


def add_text_fields(data: Dataset, spec: str) -> Dataset:
  """``data`` with the dense item field(s) of ``model.text_features`` (`parse_text_features`)."""
  for name, path in parse_text_features(spec):
    data = add_text_field(data, path, name)
  return data


def add_text_field(data: Dataset, path: str | pathlib.Path, name: str = TEXT_FIELD,
                   scale: bool = True) -> Dataset:
  """``data`` with one more dense item field, the cached text embedding.

  Args:
    data: the data set.
    path: the ``.npy`` cache.
    name: the field's name.
    scale: multiply by ``sqrt(width)`` (unit-variance entries for unit-norm vectors).
  """
  vectors = load_text_features(path, data)
  if scale:
    vectors = vectors * np.float32(np.sqrt(vectors.shape[1]))
  if name in data.items.columns:
    raise ValueError(f"item field {name!r} exists already in {data.name}")
  spec = FieldSpec(name, "dense", width=int(vectors.shape[1]))
  items = FeatureTable(data.items.specs + (spec,), {**data.items.columns, name: vectors})
  return dataclasses.replace(data, items=items)
