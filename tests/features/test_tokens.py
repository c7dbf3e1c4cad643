"""Token caches: item text -> ids (.npz), the item checks, the tokens field, the command."""

from __future__ import annotations

import numpy as np
import pytest

from metarec_jax import cli
from metarec_jax.data import FeatureTable, FieldSpec
from metarec_jax.data.parsing import DataError
from metarec_jax.features import TOKENS_FIELD, add_tokens_field, load_tokens, tokenize_item_text
from metarec_jax.features.tokens import truncate
from metarec_jax.models import text
from tests.features.test_text_features import LINES, tiny_dataset

pytest.importorskip("tokenizers", reason='the text extra is not installed: pip install -e ".[text]"')
pytest.importorskip("safetensors", reason='the text extra is not installed: pip install -e ".[text]"')


@pytest.fixture()
def melu_dir(tmp_path):
  folder = tmp_path / "melu"
  folder.mkdir()
  (folder / "movies_extrainfos.dat").write_text("\n".join(LINES) + "\n", encoding="utf-8")
  (folder / "warm_state.json").write_text("{}")
  return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  from tests.tiny_bert import write_tiny_bert
  return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


def test_cache_round_trip_truncation_and_field(melu_dir, bert_dir, tmp_path):
  out = tmp_path / "tok.npz"
  meta = tokenize_item_text(melu_dir, ["title", "plot"], out, model=str(bert_dir), max_tokens=8)
  assert meta["rows"] == 3 and meta["max_tokens"] == 8 and meta["vocab_size"] == 100
  cache = load_tokens(out, tiny_dataset(), model=str(bert_dir))
  tok = text.load_tokenizer(bert_dir, 8)
  texts = ["Toy Story. A boy and his toys.", "Jumanji", "Heat. A thief and a cop."]
  for row, t in enumerate(texts):
    want = tok.encode(t).ids
    assert cache.lengths[row] == len(want) and cache.ids[row, :len(want)].tolist() == want
    assert not cache.ids[row, len(want):].any()
  assert cache.ids[0, 0] == 2 and cache.ids[0, cache.lengths[0] - 1] == 3   # [CLS] ... [SEP], cut at 8
  assert meta["truncated"] == 3   # all three texts are longer than 8 word pieces
  # A shorter run length cuts again and keeps [SEP] last, as the tokeniser would have.
  short = load_tokens(out, tiny_dataset(), model=str(bert_dir), max_tokens=5)
  assert short.ids.shape == (3, 5)
  assert short.ids[0].tolist() == text.load_tokenizer(bert_dir, 5).encode(texts[0]).ids
  data = add_tokens_field(tiny_dataset(), out, model=str(bert_dir), max_tokens=6, finetune="lora", lora_rank=2)
  spec = data.items.specs[-1]
  assert (spec.name, spec.kind, spec.width, spec.vocab_size) == (TOKENS_FIELD, "tokens", 6, 100)
  assert spec.encoder.directory == str(bert_dir) and spec.encoder.finetune == "lora"
  assert spec.encoder.config.hidden_size == 32
  assert data.items.columns[TOKENS_FIELD].dtype == np.int32


def test_truncate_keeps_the_last_token():
  ids = np.array([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0]], np.int32)
  cut, lengths = truncate(ids, np.array([5, 3]), 3)
  assert cut.tolist() == [[2, 7, 3], [2, 7, 3]] and lengths.tolist() == [3, 3]


def test_cache_for_other_items_or_another_tokenizer_is_refused(melu_dir, bert_dir, tmp_path):
  out = tmp_path / "tok.npz"
  tokenize_item_text(melu_dir, ["plot"], out, model=str(bert_dir), max_tokens=8)
  with pytest.raises(DataError, match="other items"):
    load_tokens(out, tiny_dataset(raw_ids=(1, 2, 6)), model=str(bert_dir))
  with pytest.raises(DataError, match="do not fit 4 items"):
    load_tokens(out, tiny_dataset(n_items=4, raw_ids=(1, 2, 5, 6)), model=str(bert_dir))
  other = tmp_path / "other-bert"
  other.mkdir()
  for f in ("config.json", "model.safetensors"):
    (other / f).write_bytes((bert_dir / f).read_bytes())
  (other / "tokenizer.json").write_text((bert_dir / "tokenizer.json").read_text() + "\n")
  with pytest.raises(DataError, match="tokenizer"):
    load_tokens(out, tiny_dataset(), model=str(other))
  with pytest.raises(DataError, match="fewer than model.text_encoder.max_tokens"):
    load_tokens(out, tiny_dataset(), model=str(bert_dir), max_tokens=16)
  with pytest.raises(FileNotFoundError, match="metarec features tokens"):
    load_tokens(tmp_path / "none.npz", tiny_dataset(), model=str(bert_dir))
  with pytest.raises(ValueError, match="needs its encoder"):
    FeatureTable((FieldSpec("t", "tokens", vocab_size=100, width=8),), {"t": np.zeros((3, 8), np.int32)})


def test_features_tokens_command(melu_dir, bert_dir, tmp_path, capsys):
  out = tmp_path / "cache" / "plot.npz"
  rc = cli.main(["features", "tokens", str(melu_dir), "--field", "plot", "--out", str(out), "--model",
                 str(bert_dir), "--max-tokens", "16"])
  assert rc == 0
  assert "tokenised 3 items (plot, 1 without text)" in capsys.readouterr().out
  assert load_tokens(out, tiny_dataset(), model=str(bert_dir)).ids.shape == (3, 16)
  assert cli.main(["features", "tokens", str(melu_dir), "--out", str(tmp_path / "x.npy"), "--model",
                   str(bert_dir)]) == 2
