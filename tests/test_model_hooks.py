"""Config hooks: the field-transformer extractor, text features, outer-loop freezing."""

from __future__ import annotations

import jax
import numpy as np
import optax

from metarec_jax import apply_overrides, experiment
from metarec_jax.meta import init_meta_params, init_state, learner_spec, make_meta_train_step
from metarec_jax.meta.inner import flatten
from metarec_jax.methods import FitContext, train_model
from metarec_jax.methods.learned import freeze_labels
from tests.conftest import tiny_config


def test_freeze_keeps_matching_params_fixed_in_the_outer_loop(tiny_setup):
  _, predict, params, features, tasks, _ = tiny_setup
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  meta = init_meta_params(spec, params)
  labels = freeze_labels(meta, r"^head/")
  opt = optax.multi_transform({"train": optax.adam(1e-2), "freeze": optax.set_to_zero()}, labels)
  step = make_meta_train_step(spec, predict, opt, tasks_per_batch=4, query_size=5, support_size=6)
  state = init_state(meta, opt, jax.random.PRNGKey(0))
  for _ in range(2):
    state, _ = step(state, tasks, features)
  before, after = flatten(meta["model"]), flatten(state.params["model"])
  for k in before:
    same = np.array_equal(before[k], after[k])
    assert same == k.startswith("head/"), k


def test_transformer_extractor_text_field_and_freeze_run_end_to_end(tmp_path, tiny_data):
  vectors = np.random.default_rng(0).normal(size=(tiny_data.num_items, 6)).astype(np.float32)
  vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
  np.save(tmp_path / "text.npy", vectors)
  c = apply_overrides(tiny_config(), [
      "methods=maml", "train.steps=3", "model.extractor=transformer", "model.transformer.size=tiny",
      f"model.text_features={tmp_path / 'text.npy'}", "model.item_fields=category,tags,text_emb",
      "model.freeze=extractor/item"])
  prep = experiment.prepare(c, 0)
  assert prep.features.item["text_emb"].shape == (tiny_data.num_items, 6)
  outcome = train_model(c, FitContext(c, prep, 0, progress=False), "maml")
  paths = flatten(outcome.params["model"])
  assert any("text_emb" in k for k in paths)
  assert outcome.model.extractor == "transformer"
  results = experiment.run(c, None, progress=False, verbose=False)
  assert {r["method"] for r in results["rows"]} == {"maml"}
