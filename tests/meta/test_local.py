"""Task-local embedding tables give the numbers of full-table adaptation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.eval.evaluate import make_adapted_predictor
from metarec_jax.meta import inner
from metarec_jax.meta.learners import init_meta_params, learner_spec, meta_gradient
from metarec_jax.meta.local import local_rows, local_table_paths
from metarec_jax.models.model import RecModel, init_params, make_predict
from tests.conftest import tree_allclose


def test_local_rows_index_back_to_the_ids_and_keep_padding_at_zero():
  ids = jnp.array([[7, 3, 0], [3, 3, 9]], jnp.int32)
  rows, local = jax.jit(lambda x: local_rows(x, 12))(ids)
  assert rows.shape == (7,)  # min(12, 6 ids + the padding row)
  np.testing.assert_array_equal(rows[local], ids)
  assert int(rows[0]) == 0 and int(local[0, 2]) == 0
  assert sorted(set(np.asarray(rows).tolist())) == [0, 3, 7, 9]
  small_vocab_rows, _ = local_rows(ids, 4)
  assert small_vocab_rows.shape == (4,)


def _residual_setup(tiny_setup, tiny_data):
  """A model with the support-set user vector and the residual baseline."""
  _, _, _, features, _, batch = tiny_setup
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5,),
                   support_vector=True)
  n_items = next(iter(features.item.values())).shape[0]
  means = jnp.asarray(np.random.default_rng(0).uniform(2.5, 4.5, n_items), jnp.float32)
  features = dataclasses.replace(features, item={**features.item, ITEM_MEAN: means})
  params = init_params(model, features, jax.random.PRNGKey(3))
  return make_predict(model, residual=True), params, features, batch


@pytest.mark.parametrize("name", ["maml", "metasgd", "reptile"])
def test_local_meta_gradient_equals_full_tables(tiny_setup, name):
  _, predict, params, features, _, batch = tiny_setup
  local = learner_spec(name, inner_lr=0.3, inner_steps=2)
  full = local.with_schedule(local_tables=False)
  meta = init_meta_params(local, params)
  adapted, _ = inner.partition(params, local.adapt)
  assert len(local_table_paths(adapted, features)) >= 2, "the tiny model must adapt some tables"
  a = jax.jit(lambda m: meta_gradient(local, predict, m, features, batch))(meta)
  b = jax.jit(lambda m: meta_gradient(full, predict, m, features, batch))(meta)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
  assert tree_allclose(a[1], b[1], rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(inner.flatten(a[1]["model"])[local_table_paths(adapted, features)[0]]).max()) > 0


def test_local_tables_with_support_vector_and_residual(tiny_setup, tiny_data):
  predict, params, features, batch = _residual_setup(tiny_setup, tiny_data)
  local = learner_spec("maml", inner_lr=0.2, inner_steps=1)
  full = local.with_schedule(local_tables=False)
  meta = init_meta_params(local, params)
  a = jax.jit(lambda m: meta_gradient(local, predict, m, features, batch, tasks_per_chunk=2))(meta)
  b = jax.jit(lambda m: meta_gradient(full, predict, m, features, batch))(meta)
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
  assert tree_allclose(a[1], b[1], rtol=1e-4, atol=1e-6)
  # Evaluation adapts the same way: same query predictions.
  pa = make_adapted_predictor(local, predict)(meta, features, batch, 0.2)
  pb = make_adapted_predictor(full, predict)(meta, features, batch, 0.2)
  np.testing.assert_allclose(pa, pb, rtol=1e-5, atol=1e-6)


def test_tables_larger_than_the_vocabulary_are_refused(tiny_setup):
  model, predict, params, features, _, batch = tiny_setup
  flat = inner.flatten(params)
  path = next(k for k in flat if k.endswith("/embedding"))
  flat[path] = jnp.concatenate([flat[path], flat[path][:1]])
  with pytest.raises(ValueError, match="does not fit"):
    predict(inner.unflatten(flat), features, batch.user[0], batch.query_items[0])
