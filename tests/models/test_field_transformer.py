"""The field transformer: tokens, padding independence, the Extractor interface, sizes, bfloat16."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax.data import FieldSpec
from metarec_jax.models.field_transformer import (SIZES, FieldTransformer, FieldTransformerExtractor,
                                                  TransformerSpec, count_params)

ITEM_SPECS = (FieldSpec("rate", "categorical", vocab_size=4), FieldSpec("tags", "multi", vocab_size=7, width=3),
              FieldSpec("text", "dense", width=5))
USER_SPECS = (FieldSpec("g", "categorical", vocab_size=3),)
TINY = TransformerSpec.named("tiny")


def items(tags, width=3):
  tags = np.asarray([list(t) + [0] * (width - len(t)) for t in tags], np.int32)
  n = len(tags)
  return {"rate": jnp.arange(n) % 4, "tags": jnp.asarray(tags),
          "text": jnp.asarray(np.random.default_rng(0).normal(size=(n, 5)), jnp.float32)}


@pytest.fixture(scope="module")
def tower():
  module = FieldTransformer(ITEM_SPECS, TransformerSpec(dim=8, depth=2, heads=2, pool="cls"))
  params = jax.jit(module.init)(jax.random.PRNGKey(0), items([(1, 2), (3,)]))["params"]
  return module, params, jax.jit(lambda p, cols: module.apply({"params": p}, cols))


def test_output_does_not_depend_on_padding(tower):
  module, params, apply = tower
  base = apply(params, items([(1, 2), (3,), (5, 6, 2)]))
  assert base.shape == (3, 8)
  # Wider padding and the same ids in another order: the same token, the same output.
  wide_spec = tuple(FieldSpec("tags", "multi", vocab_size=7, width=6) if s.name == "tags" else s
                    for s in ITEM_SPECS)
  wide = FieldTransformer(wide_spec, module.spec).apply({"params": params}, items([(2, 1), (3,), (2, 6, 5)], 6))
  np.testing.assert_allclose(wide, base, atol=1e-5)
  # Each item alone equals the item in the batch: items never see each other.
  cols = items([(1, 2), (3,), (5, 6, 2)])
  one = apply(params, jax.tree_util.tree_map(lambda c: c[1:2], cols))
  np.testing.assert_allclose(one[0], base[1], atol=1e-5)


def test_empty_multi_hot_field_is_masked_out(tower):
  module, params, apply = tower
  cols = items([(), (1, 2)])
  out = apply(params, cols)
  # Perturb everything the empty field could reach through: its embedding table rows and its bias.
  noise = jax.random.normal(jax.random.PRNGKey(9), params["tokens"]["tags"]["embedding"].shape)
  moved = jax.tree_util.tree_map(lambda x: x, params)
  moved["tokens"]["tags"]["embedding"] = params["tokens"]["tags"]["embedding"] + noise
  moved["tokens"]["field_bias"] = params["tokens"]["field_bias"].at[1].add(noise[0])
  out_moved = apply(moved, cols)
  np.testing.assert_allclose(out_moved[0], out[0], atol=1e-5)   # empty field: nothing changes
  assert np.abs(np.asarray(out_moved[1] - out[1])).max() > 1e-3  # a filled field does matter


def test_mean_pool_and_projection():
  module = FieldTransformer(ITEM_SPECS, TransformerSpec(dim=8, depth=1, heads=2, pool="mean", out_dim=3))
  cols = items([(1,), ()])
  params = jax.jit(module.init)(jax.random.PRNGKey(1), cols)["params"]
  out = jax.jit(module.apply)({"params": params}, cols)
  assert out.shape == (2, 3) and np.isfinite(np.asarray(out)).all()


def test_extractor_interface_swaps_in_for_extractor():
  ext = FieldTransformerExtractor(USER_SPECS, ITEM_SPECS, TINY)
  user = {"g": jnp.array(1)}
  cols = items([(1, 2), (3,), (4,), ()])
  params = jax.jit(ext.init)(jax.random.PRNGKey(0), user, cols)
  f_u, f_i = jax.jit(ext.apply)(params, user, cols)
  assert f_u.shape == (TINY.dim,) and f_i.shape == (4, TINY.dim)
  f_i2 = jax.jit(lambda p, c: ext.apply(p, c, method=ext.embed_items))(params, cols)
  np.testing.assert_allclose(f_i2, f_i, atol=1e-6)
  # vmapped over tasks like the engine does
  batched = jax.vmap(lambda u: ext.apply(params, {"g": u}, cols)[0])(jnp.array([0, 1, 2]))
  np.testing.assert_allclose(batched[1], f_u, atol=1e-5)


def test_bfloat16_and_remat_keep_float32_params_and_gradients():
  cols = items([(1, 2), (3,)])
  full = FieldTransformer(ITEM_SPECS, TINY)
  params = jax.jit(full.init)(jax.random.PRNGKey(2), cols)["params"]
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
  half = FieldTransformer(ITEM_SPECS, TransformerSpec.named("tiny", remat=True), dtype=jnp.bfloat16)

  def loss(module, p):
    return jnp.sum(module.apply({"params": p}, cols).astype(jnp.float32) ** 2)

  g_full = jax.jit(jax.grad(lambda p: loss(full, p)))(params)
  g_half = jax.jit(jax.grad(lambda p: loss(half, p)))(params)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(g_half))
  a = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g_full)])
  b = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g_half)])
  assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.95


def test_sizes_from_tiny_to_hundreds_of_millions():
  cols = items([(1,)])
  counts = {}
  for name in SIZES:
    shapes = jax.eval_shape(FieldTransformer(ITEM_SPECS, TransformerSpec.named(name)).init,
                            jax.random.PRNGKey(0), cols)
    counts[name] = count_params(shapes)
  assert counts["tiny"] < 2_000 and counts["xl"] > 250_000_000
  assert list(counts.values()) == sorted(counts.values())
  with pytest.raises(ValueError, match="must divide"):
    FieldTransformer(ITEM_SPECS, TransformerSpec(dim=6, heads=4)).init(jax.random.PRNGKey(0), cols)
  with pytest.raises(ValueError, match="unknown transformer size"):
    TransformerSpec.named("huge")


def test_meta_trains_as_the_extractor_of_an_experiment():
  from metarec_jax import default_config, run
  if "extractor" not in default_config().model:
    pytest.skip("the engine hook model.extractor is not in this tree")
  from tests.conftest import tiny_config
  c = tiny_config()
  c.methods = ("anil",)  # the head adapts; the transformer is meta-trained in the outer loop
  c.model.extractor = "transformer"
  c.model.transformer.size = "tiny"
  c.train.steps = 4
  c.eval.scenarios = ("warm",)
  rows = run(c, None, progress=False, verbose=False)["rows"]
  assert rows and all(np.isfinite(r["mae"]) for r in rows)
