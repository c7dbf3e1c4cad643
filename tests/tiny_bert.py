"""A tiny random BERT-style model folder (config.json, model.safetensors, tokenizer.json) for tests.

It is what ``TextEncoder.from_pretrained(FOLDER)`` reads from any BERT-style
checkpoint: Hugging Face tensor names, ``[out, in]`` linear weights, and a
WordPiece ``tokenizers`` tokeniser with ``[CLS] ... [SEP]`` post-processing.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
WORDS = ("a", "the", "boy", "and", "his", "toys", "thief", "cop", "story", "of", "game", "board", "little", "room",
         "movie", "old", "men", "in", "to", "with", "dog", "cat", "city", "war", "love", ".", ",", "!", "?", ":")
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
VOCAB = tuple(dict.fromkeys(SPECIALS + WORDS + LETTERS + tuple(f"##{c}" for c in LETTERS)))
CONFIG = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu",
              model_type="bert")


def hf_tensors(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
  """Random weights under Hugging Face ``BertModel`` names (what `models.text._hf_to_flax` reads)."""
  rng = np.random.default_rng(seed)
  h, f = config["hidden_size"], config["intermediate_size"]

  def normal(*shape):
    return (0.05 * rng.normal(size=shape)).astype(np.float32)

  t = {"embeddings.word_embeddings.weight": normal(config["vocab_size"], h),
       "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], h),
       "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], h),
       "embeddings.LayerNorm.weight": 1 + normal(h), "embeddings.LayerNorm.bias": normal(h)}
  for i in range(config["num_hidden_layers"]):
    p = f"encoder.layer.{i}"
    for name, (out, inp) in {"attention.self.query": (h, h), "attention.self.key": (h, h),
                             "attention.self.value": (h, h), "attention.output.dense": (h, h),
                             "intermediate.dense": (f, h), "output.dense": (h, f)}.items():
      t[f"{p}.{name}.weight"], t[f"{p}.{name}.bias"] = normal(out, inp), normal(out)
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
      t[f"{p}.{ln}.weight"], t[f"{p}.{ln}.bias"] = 1 + normal(h), normal(h)
  return t


def write_tiny_bert(folder: pathlib.Path, seed: int = 0) -> pathlib.Path:
  """Writes the folder and returns it."""
  from safetensors.numpy import save_file
  from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  vocab = {w: i for i, w in enumerate(VOCAB)}
  assert len(vocab) <= CONFIG["vocab_size"]
  tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                     special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  tok.save(str(folder / "tokenizer.json"))
  (folder / "config.json").write_text(json.dumps(CONFIG))
  save_file(hf_tensors(CONFIG, seed), str(folder / "model.safetensors"))
  return folder
