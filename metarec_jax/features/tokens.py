"""Item text -> word-piece ids, cached as ``.npz``, added as a ``tokens`` item field.

The cached sentence embeddings of `features.text` are fixed; a ``tokens``
field instead feeds the ids to the text encoder inside the model, so the
outer loop can fine-tune it (all weights or low-rank adapters, see
`models.text.EncoderSpec` and ``model.text_encoder``).

``metarec features tokens DATA_PATH --field plot --out FILE.npz --max-tokens 64``
tokenises one text per item once (`tokenize_item_text`) and writes ``FILE.npz``:

* ``ids``: ``int32 [num_items, L]``, row ``r`` = item row ``r`` of the data set
  (the order of ``movies_extrainfos.dat``), ``[CLS] ... [SEP]`` truncated to
  ``L = max_tokens`` (the final ``[SEP]`` kept), 0-padded;
* ``lengths``: ``int32 [num_items]``, the tokens of each row;
* ``item_raw_ids``: the raw item id of every row, so a cache built for other
  items is refused rather than silently misaligned;
* ``meta``: a JSON string: the model, the text fields, the source, the
  SHA-256 of the ``tokenizer.json`` used (a run whose ``text_encoder.model``
  has another tokeniser is refused).

An experiment adds the cache with ``model.text_encoder.tokens = FILE.npz``
(`with_token_inputs`; a field ``text_tokens`` that ``model.item_fields`` can
name), and ``model.text_encoder.max_tokens`` may shorten it (``<= L``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from typing import Any, Sequence

import ml_collections
import numpy as np

from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec
from metarec_jax.data.parsing import DataError
from metarec_jax.features.text import item_texts
from metarec_jax.models import text

TOKENS_FIELD = "text_tokens"
DTYPES = ("", "float32", "bfloat16", "float16")


def tokenizer_digest(directory: pathlib.Path) -> str:
  """SHA-256 of a model folder's ``tokenizer.json``: what a token cache is valid for."""
  return hashlib.sha256((directory / "tokenizer.json").read_bytes()).hexdigest()


def tokenize_texts(tokenizer: Any, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray, int]:
  """``(ids int32 [n, max_tokens], lengths int32 [n], texts cut)`` of texts, 0-padded.

  Raises:
    ValueError: the tokeniser produced id 0 inside a text (0 marks padding).
  """
  encs = tokenizer.encode_batch(list(texts))
  cut = sum(1 for e in encs if e.overflowing)
  ids = np.zeros((len(encs), max_tokens), np.int32)
  lengths = np.zeros(len(encs), np.int32)
  for row, e in enumerate(encs):  # the tokeniser's output is one list per text anyway
    n = min(len(e.ids), max_tokens)
    ids[row, :n] = e.ids[:n]
    lengths[row] = n
  inside = np.arange(max_tokens)[None, :] < lengths[:, None]
  if (ids[inside] == 0).any():
    raise ValueError("the tokeniser gives id 0 inside a text, but tokens fields read id 0 as padding")
  return ids, lengths, cut


def tokenize_item_text(data_path: str | pathlib.Path, fields: Sequence[str], out: str | pathlib.Path, *,
                       model: str = "all-MiniLM-L6-v2", max_tokens: int = 64) -> dict:
  """Tokenises every item's text once and writes the ``.npz`` cache ``out``.

  Args:
    data_path: MeLU's ML-1M release folder.
    fields: text columns joined with ". " (`features.text.item_texts`).
    out: the ``.npz`` to write.
    model: the encoder whose tokeniser to use (a known name or a folder).
    max_tokens: ids per item, ``[CLS]`` and ``[SEP]`` included (at least 2).

  Returns:
    The cache's description (its ``meta`` plus the rows and seconds taken).
  """
  out = pathlib.Path(out)
  if out.suffix != ".npz":
    raise ValueError(f"--out must end in .npz, got {out}")
  if max_tokens < 2:
    raise ValueError(f"--max-tokens must be >= 2 ([CLS] and [SEP]), got {max_tokens}")
  start = time.perf_counter()
  raw_ids, texts, empty = item_texts(data_path, fields)
  directory = text.find_pretrained(model)
  config = text.BertConfig.from_dir(directory)
  if max_tokens > config.max_position_embeddings:
    raise ValueError(f"--max-tokens {max_tokens} exceeds the {config.max_position_embeddings} positions of {model}")
  tokenizer = text.load_tokenizer(directory, max_tokens)
  ids, lengths, cut = tokenize_texts(tokenizer, texts, max_tokens)
  meta = {"model": str(model), "fields": list(fields), "data_path": str(pathlib.Path(data_path).absolute()),
          "max_tokens": int(max_tokens), "vocab_size": int(config.vocab_size), "empty_texts": int(empty),
          "truncated": int(cut), "tokenizer_sha256": tokenizer_digest(directory)}
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez(out, ids=ids, lengths=lengths, item_raw_ids=np.asarray(raw_ids, np.int64), meta=np.array(json.dumps(meta)))
  return {**meta, "rows": len(texts), "mean_tokens": float(lengths.mean()) if len(lengths) else 0.0,
          "seconds": time.perf_counter() - start}


@dataclasses.dataclass(frozen=True)
class TokenCache:
  """A token cache read back (`load_tokens`).

  Attributes:
    ids: ``int32 [num_items, L]``.
    lengths: ``int32 [num_items]``.
    meta: the description written with it.
  """

  ids: np.ndarray
  lengths: np.ndarray
  meta: dict


def truncate(ids: np.ndarray, lengths: np.ndarray, max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
  """Ids cut to ``max_tokens`` per row, each cut row ending in its last token (``[SEP]``) as the tokeniser would."""
  if max_tokens >= ids.shape[1]:
    return ids, lengths
  cut = ids[:, :max_tokens].copy()
  long = lengths > max_tokens
  cut[long, max_tokens - 1] = ids[long, lengths[long] - 1]
  return cut, np.minimum(lengths, max_tokens).astype(np.int32)


def load_tokens(path: str | pathlib.Path, data: Dataset, model: str = "all-MiniLM-L6-v2",
                max_tokens: int = 0) -> TokenCache:
  """Reads a cache written by `tokenize_item_text` and checks it fits ``data``'s items and ``model``'s tokeniser.

  Args:
    path: the ``.npz`` cache.
    data: the data set whose item rows the cache must match.
    model: the encoder the ids are for (a known name or a folder).
    max_tokens: > 0 cuts the ids to this many per item (at most the cache's).

  Raises:
    FileNotFoundError: no such file.
    DataError: a malformed cache, one made for other items or another
      tokeniser, or ``max_tokens`` above the cache's length.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"token cache {path} does not exist; make it with "
                            f"`metarec features tokens DATA_PATH --field plot --out {path}`")
  with np.load(path, allow_pickle=False) as z:
    missing = {"ids", "lengths", "item_raw_ids", "meta"} - set(z.files)
    if missing:
      raise DataError(f"{path}: not a token cache (lacks {sorted(missing)}); make it with `metarec features tokens`")
    ids, lengths, raw = z["ids"].astype(np.int32), z["lengths"].astype(np.int32), z["item_raw_ids"]
    meta = json.loads(str(z["meta"]))
  if ids.ndim != 2 or len(ids) != data.num_items or lengths.shape != (len(ids),):
    raise DataError(f"{path}: ids of shape {ids.shape} do not fit {data.num_items} items of {data.name}")
  if data.item_raw_ids is not None:
    want = np.asarray(data.item_raw_ids)
    if len(raw) != len(want) or (raw != want).any():
      bad = int(np.flatnonzero(raw != want)[0]) if len(raw) == len(want) else 0
      raise DataError(f"{path}: made for other items than {data.name}'s (row {bad}: item "
                      f"{raw[bad] if len(raw) > bad else '?'} vs {want[bad]}); rebuild it")
  directory = text.find_pretrained(model)
  if meta.get("tokenizer_sha256") != tokenizer_digest(directory):
    raise DataError(f"{path}: tokenised with {meta.get('model')!r}'s tokenizer, not with that of "
                    f"model.text_encoder.model={model!r} ({directory}); rebuild it with --model {model}")
  if max_tokens > ids.shape[1]:
    raise DataError(f"{path}: holds {ids.shape[1]} tokens per item, fewer than model.text_encoder.max_tokens="
                    f"{max_tokens}; rebuild it with --max-tokens {max_tokens} or lower the setting")
  if max_tokens:
    ids, lengths = truncate(ids, lengths, max_tokens)
  return TokenCache(ids, lengths, meta)


def add_tokens_field(data: Dataset, path: str | pathlib.Path, model: str = "all-MiniLM-L6-v2",
                     name: str = TOKENS_FIELD, max_tokens: int = 0, **encoder: Any) -> Dataset:
  """``data`` with one more item field: the cached token ids, kind ``tokens``.

  Args:
    data: the data set.
    path: the ``.npz`` cache.
    model: the encoder (a known name or a folder with ``config.json``,
      ``model.safetensors`` and ``tokenizer.json``).
    name: the field's name.
    max_tokens: > 0 cuts the ids to this many per item.
    **encoder: `models.text.EncoderSpec` settings (``finetune``,
      ``lora_rank``, ...); a method's ``model.text_encoder`` sets them again
      when its model is built (`with_encoder_settings`).

  Raises:
    ValueError: ``name`` is taken.
  """
  cache = load_tokens(path, data, model, max_tokens)
  if name in data.items.columns:
    raise ValueError(f"item field {name!r} exists already in {data.name}")
  directory = text.find_pretrained(model)
  config = text.BertConfig.from_dir(directory)
  if cache.ids.shape[1] > config.max_position_embeddings:
    raise DataError(f"{path}: {cache.ids.shape[1]} tokens per item exceed the {config.max_position_embeddings} "
                    f"positions of {model}")
  spec = FieldSpec(name, "tokens", vocab_size=int(config.vocab_size), width=int(cache.ids.shape[1]),
                   encoder=text.EncoderSpec(config, directory=str(directory), **encoder))
  items = FeatureTable(data.items.specs + (spec,), {**data.items.columns, name: cache.ids})
  return dataclasses.replace(data, items=items)


def encoder_settings(te: ml_collections.ConfigDict) -> dict:
  """The `models.text.EncoderSpec` settings of a ``model.text_encoder`` config block."""
  return dict(finetune=te.finetune, lora_rank=int(te.lora_rank), lora_alpha=float(te.lora_alpha),
              remat=bool(te.remat), dtype=te.dtype)


def with_token_inputs(data: Dataset, config: ml_collections.ConfigDict) -> Dataset:
  """Adds the ``text_tokens`` field when ``model.text_encoder.tokens`` names a cache (else ``data`` as it is)."""
  te = config.model.text_encoder
  if not te.tokens:
    return data
  return add_tokens_field(data, te.tokens, te.model, TOKENS_FIELD, int(te.max_tokens), **encoder_settings(te))


def with_encoder_settings(specs: Sequence[FieldSpec], te: ml_collections.ConfigDict) -> tuple[FieldSpec, ...]:
  """``specs`` with each ``tokens`` field's fine-tuning set from a method's ``model.text_encoder`` block.

  The data set fixes the files and shape (`add_tokens_field`); each method
  chooses how its model trains the encoder.
  """
  return tuple(dataclasses.replace(s, encoder=dataclasses.replace(s.encoder, **encoder_settings(te)))
               if s.kind == "tokens" and s.encoder is not None else s for s in specs)


def check_text_encoder(name: str, mc: ml_collections.ConfigDict, problems: list[str]) -> None:
  """The ``model.text_encoder`` keys of a learned method's config (appends to ``problems``)."""
  te, where = mc.model.text_encoder, f"method {name}: model.text_encoder"
  if te.finetune not in text.FINETUNE_MODES:
    problems.append(f"{where}.finetune must be one of {text.FINETUNE_MODES}, got {te.finetune!r}")
  if te.finetune == "lora" and te.lora_rank < 1:
    problems.append(f"{where}.lora_rank must be >= 1 with finetune=lora, got {te.lora_rank}")
  if te.lora_alpha <= 0:
    problems.append(f"{where}.lora_alpha must be > 0, got {te.lora_alpha}")
  if te.max_tokens < 0 or te.max_tokens == 1:
    problems.append(f"{where}.max_tokens must be >= 2 ([CLS] and [SEP]; 0: the cache's length), got {te.max_tokens}")
  if te.dtype not in DTYPES:
    problems.append(f"{where}.dtype must be one of {DTYPES} (empty: model.dtype), got {te.dtype!r}")
  if not te.tokens:
    if te.finetune != "frozen" or te.remat:
      problems.append(f"{where}.finetune / remat need a token cache: set model.text_encoder.tokens=FILE.npz "
                      "(`metarec features tokens DATA_PATH --field plot --out FILE.npz`)")
    return
  if not str(te.tokens).endswith(".npz"):
    problems.append(f"{where}.tokens must be a .npz from `metarec features tokens`, got {te.tokens!r} "
                    "(a .npy of sentence vectors goes to model.text_features)")
  if mc.model.extractor != "fields":
    problems.append(f"{where}.tokens: the {TOKENS_FIELD} field is embedded by the 'fields' extractor only, not "
                    f"model.extractor={mc.model.extractor!r}")
  if mc.model.item_fields and TOKENS_FIELD not in mc.model.item_fields and te.finetune != "frozen":
    problems.append(f"{where}.finetune={te.finetune} has nothing to train: model.item_fields leaves out "
                    f"{TOKENS_FIELD}")
