"""Fine-tuning the text encoder of a tokens item field in the outer loop: LoRA, all, frozen; remat; weights.

A tiny random BERT folder (`tests.tiny_bert`: config.json, model.safetensors
under Hugging Face names, a WordPiece tokenizer.json) stands in for
all-MiniLM-L6-v2, so the loader of any BERT-style folder is exercised too.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict

from metarec_jax.config import ConfigError, validate
from metarec_jax.data import FeatureTable, FieldSpec
from metarec_jax.data.splits import make_split
from metarec_jax.data.tasks import build_taskset, features_from_tables, sample_batch
from metarec_jax.features import TOKENS_FIELD
from metarec_jax.meta.inner import flatten, partition
from metarec_jax.meta.learners import init_meta_params, meta_gradient
from metarec_jax.methods.learned import build_model, outer_optimizer, predict_of, spec_of
from metarec_jax.models import init_params, text
from tests.conftest import tiny_config

pytest.importorskip("tokenizers", reason='the text extra is not installed: pip install -e ".[text]"')
pytest.importorskip("safetensors", reason='the text extra is not installed: pip install -e ".[text]"')

LENGTH = 8
SMALL = text.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
ENCODER = f"extractor/item/{TOKENS_FIELD}/{text.ENCODER}/"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  from tests.tiny_bert import write_tiny_bert
  return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


def with_tokens(data, bert_dir):
  """``data`` plus a tokens item field of random ``[CLS] ... [SEP]`` rows for the tiny encoder."""
  config = text.BertConfig.from_dir(bert_dir)
  rng = np.random.default_rng(0)
  n = data.num_items
  lengths = rng.integers(3, LENGTH + 1, n)
  ids = rng.integers(5, config.vocab_size, (n, LENGTH)).astype(np.int32)
  ids[:, 0] = 2
  ids[np.arange(LENGTH)[None] >= lengths[:, None]] = 0
  ids[np.arange(n), lengths - 1] = 3
  spec = FieldSpec(TOKENS_FIELD, "tokens", vocab_size=config.vocab_size, width=LENGTH,
                   encoder=text.EncoderSpec(config, directory=str(bert_dir)))
  items = FeatureTable(data.items.specs + (spec,), {**data.items.columns, TOKENS_FIELD: ids})
  return dataclasses.replace(data, items=items)


def train(tiny_data, bert_dir, finetune, freeze="", steps=3):
  """A few outer-loop steps (Adam) on one fixed batch: (initial params, final params, losses).

  No inner steps: the query loss after an inner SGD step of a ReLU model
  jumps where a unit's pre-activation changes sign (the inner gradient does),
  so "the loss falls" is checked on the outer objective that is smooth.
  """
  c = tiny_config()
  c.meta.learner = "maml"
  c.meta.inner_steps = 0
  c.optimizer.lr = 0.01
  c.model.text_encoder.finetune = finetune
  c.model.text_encoder.lora_rank = 2
  c.model.freeze = freeze
  data = with_tokens(tiny_data, bert_dir)
  model = build_model(c, data, 3.5)
  predict, spec = predict_of(c, model), spec_of(c)
  features = features_from_tables(data.users, data.items)
  tasks = build_taskset(make_split(data, "cold_flags", 0).train, min_length=13)
  batch = sample_batch(tasks, jax.random.PRNGKey(1), 8, 5, 6)
  params = init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(0)))
  opt = outer_optimizer(c, params)

  @jax.jit
  def step(p, s):
    loss, grads, _ = meta_gradient(spec, predict, p, features, batch)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss

  p, s, losses = params, opt.init(params), []
  for _ in range(steps):
    p, s, loss = step(p, s)
    losses.append(float(loss))
  return params, p, losses


def changed(before, after):
  a, b = flatten(before["model"]), flatten(after["model"])
  return {k for k in a if not np.array_equal(a[k], b[k])}


def test_fresh_lora_equals_the_base_encoder_and_keeps_its_param_layout():
  ids = jnp.array([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]])
  base = text.SentenceEncoder(SMALL)
  lora = text.SentenceEncoder(SMALL, lora_rank=4)
  p_base = jax.jit(base.init)(jax.random.PRNGKey(0), ids, ids > 0)["params"]
  p_lora = jax.jit(lora.init)(jax.random.PRNGKey(1), ids, ids > 0)["params"]
  flat = flatten_dict(p_lora, sep="/")
  adapters = {k for k in flat if k.endswith(("/lora_a", "/lora_b"))}
  assert {k.rsplit("/", 1)[0] for k in adapters} == {
      f"layer_0/{m}" for m in ("attention/query", "attention/key", "attention/value",
                                                    "attention/output", "intermediate", "output")}
  assert set(flat) - adapters == set(flatten_dict(p_base, sep="/"))       # base layout unchanged
  merged = text.merge_pretrained(p_lora, p_base)                          # base weights in, adapters kept
  np.testing.assert_array_equal(flatten_dict(merged, sep="/")["layer_0/attention/query/lora_a"],
                                flat["layer_0/attention/query/lora_a"])
  np.testing.assert_array_equal(jax.jit(lora.apply)({"params": merged}, ids, ids > 0),
                                jax.jit(base.apply)({"params": p_base}, ids, ids > 0))


def test_remat_gives_the_same_loss_and_grads():
  ids = jnp.array([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]])
  plain, remat = text.SentenceEncoder(SMALL, lora_rank=2), text.SentenceEncoder(SMALL, lora_rank=2, remat=True)
  params = jax.jit(plain.init)(jax.random.PRNGKey(0), ids, ids > 0)["params"]
  params = jax.tree_util.tree_map(lambda x: x + 0.01, params)  # B != 0: the adapters take part

  def loss(module):
    return jax.jit(jax.value_and_grad(lambda p: jnp.sum(module.apply({"params": p}, ids, ids > 0) ** 3)))(params)

  (l0, g0), (l1, g1) = loss(plain), loss(remat)
  np.testing.assert_allclose(l0, l1, rtol=1e-5)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g0, g1)


def test_lora_trains_only_the_adapters_and_lowers_the_loss(tiny_data, bert_dir):
  # Everything outside the encoder frozen too (model.freeze): the loss can only fall through the adapters.
  before, after, losses = train(tiny_data, bert_dir, "lora", freeze=f"^(?!{ENCODER})")
  moved = changed(before, after)
  assert moved and all(k.startswith(ENCODER) and k.endswith(("/lora_a", "/lora_b")) for k in moved), moved
  assert {k for k in moved if k.endswith("/lora_b")} == {k for k in flatten(before["model"]) if k.endswith("/lora_b")}
  assert losses[-1] < losses[0], losses
  # The pretrained-weights hook: the folder's weights, not the random init, are the model's base weights.
  enc = before["model"]["extractor"]["item"][TOKENS_FIELD][text.ENCODER]
  pretrained = text.load_params(bert_dir, text.BertConfig.from_dir(bert_dir))
  np.testing.assert_array_equal(enc["layer_1"]["intermediate"]["kernel"], pretrained["layer_1"]["intermediate"]["kernel"])
  np.testing.assert_array_equal(enc["word_embeddings"]["embedding"], pretrained["word_embeddings"]["embedding"])


def test_all_trains_the_base_weights_and_frozen_none(tiny_data, bert_dir):
  before, after, losses = train(tiny_data, bert_dir, "all", freeze=f"^(?!{ENCODER})")
  moved = changed(before, after)
  assert moved and all(k.startswith(ENCODER) for k in moved)
  assert {f"{ENCODER}layer_0/attention/query/kernel", f"{ENCODER}word_embeddings/embedding"} <= moved
  assert not any("lora" in k for k in flatten(before["model"]))
  assert losses[-1] < losses[0], losses
  before, after, losses = train(tiny_data, bert_dir, "frozen", steps=1)
  moved = changed(before, after)
  assert moved and not any(k.startswith(ENCODER) for k in moved)
  assert f"extractor/item/{TOKENS_FIELD}/proj/kernel" in moved


def test_the_inner_loop_never_adapts_the_encoder(tiny_data, bert_dir):
  data = with_tokens(tiny_data, bert_dir)
  c = tiny_config()
  model = build_model(c, data, 3.5)
  params = jax.eval_shape(lambda: init_params(model, features_from_tables(data.users, data.items),
                                              jax.random.PRNGKey(0)))
  adapted, frozen = partition(params, "all")
  assert not any(k.startswith(ENCODER) for k in adapted) and any(k.startswith(ENCODER) for k in frozen)
  assert f"extractor/item/{TOKENS_FIELD}/proj/kernel" in adapted
  with pytest.raises(ValueError, match="never adapt in the inner loop"):
    partition(params, "text_encoder")


def test_config_keys_are_checked():
  c = tiny_config()
  c.model.text_encoder.finetune = "some"
  with pytest.raises(ConfigError, match="finetune must be one of"):
    validate(c)
  c = tiny_config()
  c.model.text_encoder.finetune = "lora"
  with pytest.raises(ConfigError, match="need a token cache"):
    validate(c)
  c.model.text_encoder.tokens = "t.npz"
  c.model.text_encoder.lora_rank = 0
  c.model.extractor = "transformer"
  with pytest.raises(ConfigError, match="lora_rank must be >= 1(.|\n)*'fields' extractor only"):
    validate(c)
