"""A tokens item field through `metarec run`: LoRA fine-tuning trains the adapters and leaves the pretrained weights."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from metarec_jax.features.tokens import TOKENS_FIELD, tokenizer_digest
from metarec_jax.models import text
from tests.conftest import tiny_config

pytest.importorskip("tokenizers", reason='the text extra is not installed: pip install -e ".[text]"')
pytest.importorskip("safetensors", reason='the text extra is not installed: pip install -e ".[text]"')


def test_a_run_fine_tunes_only_the_adapters_of_the_pretrained_encoder(tmp_path):
  from metarec_jax import run
  from metarec_jax.prepared import with_model_inputs
  from metarec_jax.data.registry import load_dataset
  from metarec_jax.serving import Recommender
  from tests.tiny_bert import write_tiny_bert
  bert = write_tiny_bert(tmp_path / "tiny-bert")
  c = tiny_config()
  c.methods = ("maml",)  # maml adapts "all" in the inner loop: the encoder must still stay out of it
  c.train.steps, c.train.eval_every, c.train.checkpoint_every = 3, 3, 3
  c.eval.scenarios = ("item_cold",)
  num_items = load_dataset(c.data).num_items
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 7, num_items).astype(np.int32)
  ids = np.where(np.arange(6)[None, :] < lengths[:, None], rng.integers(5, 100, (num_items, 6)), 0).astype(np.int32)
  cache = tmp_path / "tokens.npz"
  meta = {"model": str(bert), "tokenizer_sha256": tokenizer_digest(bert), "max_tokens": 6}
  np.savez(cache, ids=ids, lengths=lengths, item_raw_ids=np.arange(num_items), meta=np.array(json.dumps(meta)))
  c.model.text_encoder.update(dict(tokens=str(cache), model=str(bert), finetune="lora", lora_rank=2, max_tokens=6))
  assert TOKENS_FIELD in with_model_inputs(load_dataset(c.data), c).items.columns
  out = run(c, workdir=tmp_path / "run", progress=False, verbose=False)
  assert {r["scenario"] for r in out["rows"] if r["method"] == "maml"} == {"item_cold"}

  trained = Recommender.load(tmp_path / "run", method="maml").meta["model"]
  encoder = trained["extractor"]["item"][TOKENS_FIELD][text.ENCODER]
  config = text.BertConfig.from_dir(bert)
  pretrained = text.load_params(bert, config)
  flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(encoder)}
  want = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(pretrained)}
  assert want and set(want) <= set(flat)
  for path, value in want.items():  # every pretrained weight as loaded: the outer loop left it alone
    np.testing.assert_array_equal(flat[path], value, err_msg=path)
  lora_b = [v for p, v in flat.items() if "lora_b" in p]
  part = json.loads((tmp_path / "run" / "parts" / "maml__seed0.json").read_text())
  step = next(iter(part["selection"].values()))["best_step"]  # the params served are this step's
  assert len(lora_b) == 6 * config.num_hidden_layers  # q, k, v, attention output, intermediate, output
  assert any(np.abs(v).max() > 0 for v in lora_b) == (step > 0)  # B starts at zero; trained steps move it
