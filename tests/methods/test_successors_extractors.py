"""Every successor of MeLU composes with every extractor: traced (not compiled) with the field transformer.

`jax.eval_shape` traces the method's meta-gradient and predict function
without compiling them, so this covers every method cheaply; the per-method
test modules compile and check the numbers. A method that cannot use an
extractor must refuse it in config validation, naming it.
"""

from __future__ import annotations

import jax
import pytest

from metarec_jax import ConfigError, validate
from metarec_jax.data import sample_batch
from metarec_jax.meta.learners import meta_gradient, row
from metarec_jax.methods import resolve
from metarec_jax.methods.learned import method_key
from metarec_jax.prepared import prepare

from tests.conftest import tiny_config

SUCCESSORS = ("tanp", "tanp_gating", "cmml", "coldnas", "lwa", "nlba", "mamo", "metaemb", "mwuf", "metahin")
# The item-id warm-up reads the content embeddings of the fields extractor (refused otherwise, by name).
FIELDS_ONLY = ("metaemb", "mwuf")


@pytest.fixture(scope="module")
def prep():
  c = tiny_config()
  c.model.extractor = "transformer"
  c.methods = ("tanp",)
  return prepare(c, 0)


@pytest.mark.parametrize("name", SUCCESSORS)
def test_a_successor_traces_with_the_field_transformer(name, prep):
  c = tiny_config()
  c.model.extractor = "transformer"
  c.methods = (name,)
  if name in FIELDS_ONLY:
    with pytest.raises(ConfigError, match="extractor"):
      validate(c)
    return
  validate(c)
  method = resolve(name, c)
  parts = method.parts(prep)
  params = jax.eval_shape(lambda k: parts.init(prep.features, k), method_key(0, name))
  paths = ["/".join(str(getattr(k, "key", k)) for k in path)
           for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  assert any(p.startswith("extractor/") for p in paths), paths[:5]
  batch = sample_batch(prep.train, jax.random.PRNGKey(0), 4, c.data.query_size, prep.support_size)
  meta = {"model": params}
  loss, grads, _ = jax.eval_shape(lambda m, b: meta_gradient(parts.spec, parts.predict, m, prep.features, b),
                                  meta, batch)
  assert loss.shape == () and jax.tree_util.tree_structure(grads["model"]) == jax.tree_util.tree_structure(params)
  t = row(batch, 0)
  scores = jax.eval_shape(lambda m: parts.predict(m, prep.features, t.user, t.query_items,
                                                  (t.support_items, t.support_ratings, t.support_mask)), params)
  assert scores.shape == t.query_items.shape
