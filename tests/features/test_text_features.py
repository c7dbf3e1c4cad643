"""Text features: item texts from MeLU's file, the .npy cache, the dense field, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metarec_jax import cli
from metarec_jax.data import FeatureTable, FieldSpec, Interactions
from metarec_jax.data.interactions import Dataset
from metarec_jax.data.parsing import DataError
from metarec_jax.features import TEXT_FIELD, add_text_field, item_texts, load_text_features
from metarec_jax.features import text as text_features

LINES = [
    "1::Toy Story::1995::G::22 Nov 1995::Animation::John Lasseter::Joss Whedon::Tom Hanks::A boy and his toys.::x",
    "2::Jumanji::1995::PG::15 Dec 1995::Adventure::Joe Johnston::Greg Taylor::Robin Williams::N/A::x",
    "5::Heat::1995::R::15 Dec 1995::Crime::Michael Mann::Michael Mann::Al Pacino::A thief and a cop.::x",
]


@pytest.fixture()
def melu_dir(tmp_path):
  (tmp_path / "movies_extrainfos.dat").write_text("\n".join(LINES) + "\n", encoding="utf-8")
  (tmp_path / "warm_state.json").write_text("{}")
  return tmp_path


def tiny_dataset(n_items=3, raw_ids=(1, 2, 5)) -> Dataset:
  items = FeatureTable((FieldSpec("rate", "categorical", vocab_size=4),), {"rate": np.arange(n_items) % 4})
  users = FeatureTable((FieldSpec("g", "categorical", vocab_size=2),), {"g": np.zeros(2, np.int32)})
  return Dataset("tiny", Interactions([0, 1], [0, 1], [3.0, 4.0]), users, items,
                 item_raw_ids=np.asarray(raw_ids))


def write_cache(path, vectors, raw_ids):
  np.save(path, vectors)
  path.with_suffix(".json").write_text(json.dumps({"item_raw_ids": list(raw_ids)}))


def test_item_texts_join_fields_and_skip_missing(melu_dir):
  ids, texts, empty = item_texts(melu_dir, ["plot"])
  assert ids.tolist() == [1, 2, 5] and texts == ["A boy and his toys.", "", "A thief and a cop."] and empty == 1
  _, texts, empty = item_texts(melu_dir, ["title", "plot"])
  assert texts[0] == "Toy Story. A boy and his toys." and texts[1] == "Jumanji" and empty == 0
  with pytest.raises(DataError, match="unknown text field"):
    item_texts(melu_dir, ["poster"])
  with pytest.raises(DataError, match="MeLU's release"):
    item_texts(melu_dir / "nowhere", ["plot"])


def test_cache_becomes_a_scaled_dense_item_field(tmp_path):
  vectors = np.eye(3, 4, dtype=np.float32)
  write_cache(tmp_path / "t.npy", vectors, [1, 2, 5])
  data = add_text_field(tiny_dataset(), tmp_path / "t.npy")
  assert data.items.specs[-1] == FieldSpec(TEXT_FIELD, "dense", width=4)
  np.testing.assert_allclose(data.items.columns[TEXT_FIELD], vectors * 2.0)  # sqrt(4)
  assert data.items.select(("rate", TEXT_FIELD)).num_rows == 3


def test_cache_for_other_items_is_refused(tmp_path):
  write_cache(tmp_path / "t.npy", np.zeros((3, 4), np.float32), [1, 2, 6])
  with pytest.raises(DataError, match="other items"):
    load_text_features(tmp_path / "t.npy", tiny_dataset())
  write_cache(tmp_path / "u.npy", np.zeros((2, 4), np.float32), [1, 2])
  with pytest.raises(DataError, match="does not fit 3 items"):
    load_text_features(tmp_path / "u.npy", tiny_dataset())
  with pytest.raises(FileNotFoundError, match="metarec features text"):
    load_text_features(tmp_path / "none.npy", tiny_dataset())


def test_features_text_command_writes_cache_and_description(melu_dir, tmp_path, monkeypatch, capsys):
  class FakeEncoder:  # the command's plumbing, without the 90 MB weights
    @classmethod
    def from_pretrained(cls, name, dtype="float32"):
      return cls()

    def encode(self, texts, batch_size=64, progress=False):
      return np.stack([np.full(4, len(t), np.float32) for t in texts])

  import metarec_jax.models.text as text_model
  monkeypatch.setattr(text_model, "TextEncoder", FakeEncoder)
  out = tmp_path / "cache" / "plot.npy"
  rc = cli.main(["features", "text", str(melu_dir), "--field", "plot", "--out", str(out), "--no-progress"])
  assert rc == 0
  assert "embedded 3 items (plot, 1 without text)" in capsys.readouterr().out
  np.testing.assert_allclose(np.load(out)[:, 0], [19, 0, 18])
  meta = json.loads(out.with_suffix(".json").read_text())
  assert meta["item_raw_ids"] == [1, 2, 5] and meta["fields"] == ["plot"]
  assert cli.main(["features", "text", str(melu_dir), "--field", "nope", "--out", str(out)]) == 2


def test_melu_cache_matches_the_real_encoder(melu_dir, tmp_path):
  pytest.importorskip("tokenizers", reason='the text extra is not installed: pip install -e ".[text]"')
  pytest.importorskip("safetensors", reason='the text extra is not installed: pip install -e ".[text]"')
  from metarec_jax.models.text import TextEncoder, TextExtraMissing
  try:
    encoder = TextEncoder.from_pretrained()
  except TextExtraMissing as e:
    pytest.skip(str(e))
  meta = text_features.embed_item_text(melu_dir, ["title", "plot"], tmp_path / "t.npy", progress=False,
                                       batch_size=4)
  got = np.load(tmp_path / "t.npy")
  assert got.shape == (3, 384) and meta["rows"] == 3
  np.testing.assert_allclose(got, encoder.encode(item_texts(melu_dir, ["title", "plot"])[1], batch_size=4),
                             atol=1e-6)


def test_experiment_uses_text_field_and_freezes_its_projection(tmp_path):
  from metarec_jax import default_config
  if "text_features" not in default_config().model or "freeze" not in default_config().model:
    pytest.skip("the engine hooks model.text_features / model.freeze are not in this tree")
  import jax
  from metarec_jax import experiment
  from metarec_jax.methods import FitContext, train_model
  from metarec_jax.methods.learned import method_key
  from metarec_jax.models import init_params
  from metarec_jax.prepared import load_dataset
  from tests.conftest import tiny_config
  c = tiny_config()
  c.methods = ("maml",)
  c.eval.scenarios = ("warm",)
  data = load_dataset(c.data)
  np.save(tmp_path / "t.npy", np.random.default_rng(0).normal(size=(data.num_items, 6)).astype(np.float32))
  c.model.text_features = str(tmp_path / "t.npy")
  c.model.freeze = "extractor/item/text_emb"
  prep = experiment.prepare(c, 0)
  assert TEXT_FIELD in prep.features.item
  outcome = train_model(c, FitContext(c, prep, 0, progress=False), "maml")
  kernel = outcome.params["model"]["extractor"]["item"][TEXT_FIELD]["kernel"]
  assert kernel.shape == (6, c.model.embed_dim)
  k_init = jax.random.split(method_key(0, "maml"))[0]
  init = init_params(outcome.model, prep.features, k_init)
  np.testing.assert_array_equal(kernel, init["extractor"]["item"][TEXT_FIELD]["kernel"])
  moved = outcome.params["model"]["extractor"]["item"]
  assert any(not np.array_equal(moved[k]["embedding"], init["extractor"]["item"][k]["embedding"])
             for k in moved if "embedding" in moved[k])
