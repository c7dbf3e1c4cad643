"""MetaEmb and MWUF (`methods.id_warmup`): the generated id rows, the item-task losses, a run and serving."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import metarec_jax.methods.id_warmup as idw  # registers metaemb and mwuf
from metarec_jax import ConfigError, validate
from metarec_jax.data.negatives import pool_logits, seen_matrix
from metarec_jax.meta.losses import masked_mse
from metarec_jax.methods import resolve
from metarec_jax.methods.learned import build_model
from metarec_jax.models import init_params, make_predict
from metarec_jax.models.id_warmup import (ID_FIELD, KEY, MetaEmbNet, MWUFNet, WarmedModel, content_vectors,
                                          content_width, exclude_warmup, id_table, known_ids, make_warmed_predict,
                                          with_id_table)
from metarec_jax.prepared import prepare
from tests.conftest import tiny_config

PAIRS = 4


@dataclasses.dataclass
class Case:
  config: object
  prep: object
  model: object
  params: dict
  predict: object
  tasks: object        # item tasks
  batch: object        # an ItemBatch of 5 items
  setup: object        # MetaEmb's WarmupSetup
  mwuf_setup: object
  gen: dict            # generator params (not at their zero init: the generator matters)
  mwuf: dict           # MWUF training params


def _jiggle(tree, key, scale=0.3):
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return jax.tree_util.tree_unflatten(treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in
                                                zip(leaves, keys)])


_sample = jax.jit(idw.sample_item_batch, static_argnums=(2, 3))


@functools.lru_cache(maxsize=None)
def case() -> Case:
  c = tiny_config()
  c.model.item_id = True
  c.methods = ("metaemb",)
  prep = prepare(c, 0)
  model = build_model(c, prep.data, prep.stats.mean)
  params = init_params(model, prep.features, jax.random.PRNGKey(0))
  predict = make_predict(model)
  tasks = jax.device_put(idw.item_tasks(prep.split.train, cap=12, pad_to=2 * PAIRS, seed=0))
  batch = _sample(tasks, jax.random.PRNGKey(1), 5, PAIRS)
  setup = idw.WarmupSetup(model, predict, masked_mse, MetaEmbNet((5,), c.model.embed_dim))
  mwuf_setup = dataclasses.replace(setup, net=MWUFNet((5,), c.model.embed_dim))
  width, mean = content_width(model), jnp.mean(id_table(params)[1:], 0)
  gen = _jiggle(setup.net.init(jax.random.PRNGKey(2), width, mean), jax.random.PRNGKey(3))
  users = jnp.arange(4)
  du = idw.user_vectors(model, params, {s.name: prep.features.user[s.name][users] for s in model.user_specs})
  mw = mwuf_setup.net.init(jax.random.PRNGKey(4), width, du.shape[-1], mean, du.mean(0))
  mw = {**_jiggle(mw, jax.random.PRNGKey(5)), "cold": jnp.tile(mean[None], (id_table(params).shape[0], 1))}
  return Case(c, prep, model, params, predict, tasks, batch, setup, mwuf_setup, gen, mw)


def _known_and_unknown(c: Case):
  ids = np.asarray(c.prep.features.item[ID_FIELD])
  return jnp.asarray(np.flatnonzero(ids > 0)[:4]), jnp.asarray(np.flatnonzero(ids == 0)[:4])


def test_shapes_and_the_content_is_the_extractors_item_vector_without_the_id():
  c = case()
  known, unknown = _known_and_unknown(c)
  assert len(known) == 4 and len(unknown) == 4
  items = jnp.concatenate([known, unknown])
  cols = {s.name: c.prep.features.item[s.name][items] for s in c.model.item_specs}
  content = content_vectors(c.model, c.params, cols)
  assert content.shape == (8, content_width(c.model)) and content_width(c.model) == 3 * c.config.model.embed_dim
  _, f_i = jax.jit(c.model.embed)(c.params, {s.name: c.prep.features.user[s.name][0] for s in c.model.user_specs},
                                  cols)
  np.testing.assert_allclose(np.asarray(content), np.asarray(f_i[:, :content.shape[1]]), atol=1e-6)
  # content ids no training item has read as missing: zeros (categorical), left out of the mean (multi-hot)
  known = known_ids(c.model, c.prep.data.items.columns, np.unique(c.prep.split.train.item))
  assert [s.name for s in c.model.item_specs[:3]] == ["category", "brand", "tags"]
  known["category"] = known["category"].copy()
  known["category"][int(cols["category"][0])] = False
  masked = content_vectors(c.model, c.params, cols, known)
  d = c.config.model.embed_dim
  gone = np.asarray(cols["category"] == cols["category"][0])
  np.testing.assert_array_equal(np.asarray(masked[gone, :d]), 0.0)
  np.testing.assert_allclose(np.asarray(masked[~gone]), np.asarray(content[~gone]), atol=1e-6)
  np.testing.assert_allclose(np.asarray(masked[:, d:]), np.asarray(content[:, d:]), atol=1e-6)
  tags = np.asarray(cols["tags"])
  tag = int(tags[0][tags[0] > 0][0])
  known["tags"] = known["tags"].copy()
  known["tags"][tag] = False
  masked = np.asarray(content_vectors(c.model, c.params, cols, known))
  has = (tags == tag).any(1)
  assert np.abs(masked[has, 2 * d:] - np.asarray(content)[has, 2 * d:]).max() > 1e-6
  np.testing.assert_allclose(masked[~has, 2 * d:], np.asarray(content)[~has, 2 * d:], atol=1e-6)
  for net, p in ((c.setup.net, c.gen), (c.mwuf_setup.net, {k: v for k, v in c.mwuf.items() if k != "cold"})):
    assert net.cold_embedding(p, content).shape == (8, c.config.model.embed_dim)
    predict = make_warmed_predict(WarmedModel(c.model, net))
    out = jax.jit(lambda q: predict(q, c.prep.features, jnp.int32(3), items))({**c.params, KEY: p})
    assert out.shape == (8,) and bool(jnp.all(jnp.isfinite(out)))
  b = c.batch
  assert b.item.shape == (5,) and b.a_users.shape == b.b_users.shape == (5, PAIRS)
  assert b.users.shape == c.tasks.items[:5].shape


def test_the_generator_is_used_only_for_unknown_ids():
  c = case()
  known, unknown = _known_and_unknown(c)
  items = jnp.concatenate([known, unknown])
  warmed = make_warmed_predict(WarmedModel(c.model, c.setup.net))
  f, user = c.prep.features, jnp.int32(7)
  predict = jax.jit(lambda p: warmed(p, f, user, items))
  one = predict({**c.params, KEY: c.gen})
  other = predict({**c.params, KEY: _jiggle(c.gen, jax.random.PRNGKey(9))})
  base = jax.jit(lambda p: c.predict(p, f, user, items))(c.params)
  np.testing.assert_allclose(np.asarray(one[:4]), np.asarray(base[:4]), atol=1e-5)   # known: the base's own rows
  np.testing.assert_allclose(np.asarray(other[:4]), np.asarray(base[:4]), atol=1e-5)
  assert float(jnp.min(jnp.abs(one[4:] - other[4:]))) > 1e-6                       # unknown: the generator's rows
  assert float(jnp.max(jnp.abs(one[4:] - base[4:]))) > 1e-4                        # not the shared row 0
  # the unknown item's score is the base model's with that item's generated row in place of row 0
  item = unknown[0]
  cols = {s.name: f.item[s.name][item[None]] for s in c.model.item_specs}
  phi = c.setup.net.cold_embedding(c.gen, content_vectors(c.model, c.params, cols))[0]
  by_hand = c.predict(with_id_table(c.params, id_table(c.params).at[0].set(phi)), f, user, item[None])
  np.testing.assert_allclose(float(one[4]), float(by_hand[0]), atol=1e-5)
  # serving's cached item features (`embed`) agree with predict
  model = WarmedModel(c.model, c.setup.net)
  f_u, f_i = model.embed({**c.params, KEY: c.gen}, {s.name: f.user[s.name][user] for s in c.model.user_specs},
                         {s.name: f.item[s.name][items] for s in c.model.item_specs})
  np.testing.assert_allclose(np.asarray(model.score_features(c.params, f_u, f_i)), np.asarray(one), atol=1e-5)


def test_the_adapt_filter_never_reaches_the_warmup_params():
  import re
  flat = ["warmup/net/out/kernel", "head/dense_0/kernel", "extractor/item/item_id/embedding"]
  for pattern, want in (("all", flat[1:]), ("head", flat[1:2]), ("^extractor/(user|item)/", flat[2:])):
    rx = re.compile(exclude_warmup(pattern))
    assert [k for k in flat if rx.search(k)] == want


def test_metaemb_two_batch_loss_equals_the_hand_written_one():
  c = case()
  b = idw.row(c.batch, 0)
  b = b.replace(a_mask=b.a_mask.at[-1].set(False))  # a masked slot counts for nothing
  alpha, lr = 0.3, 0.5
  cols = {s.name: c.prep.features.item[s.name][b.item[None]] for s in c.model.item_specs}
  content = content_vectors(c.model, c.params, cols)[0]
  got, aux = jax.jit(lambda p: idw.metaemb_item_loss(c.setup, alpha, lr, p, c.params,
                                                     idw.as_new_items(c.prep.features), content, b))(c.gen)

  # by hand: the item keeps its own id, whose row holds the embedding under study
  f = c.prep.features
  row_id = int(f.item[ID_FIELD][b.item])
  user_cols = lambda u: {s.name: f.user[s.name][u] for s in c.model.user_specs}
  item_cols = {s.name: f.item[s.name][b.item[None]] for s in c.model.item_specs}

  def loss(emb, users, labels, mask):
    p = with_id_table(c.params, id_table(c.params).at[row_id].set(emb))
    scores = jnp.stack([c.model.apply({"params": p}, user_cols(u), item_cols)[0] for u in users])
    m = mask.astype(jnp.float32)
    return jnp.sum(m * (scores - labels) ** 2) / jnp.sum(m)

  @jax.jit
  def hand(gen):
    phi = c.setup.net.cold_embedding(gen, content)
    la, g = jax.value_and_grad(loss)(phi, b.a_users, b.a_labels, b.a_mask)
    return la, loss(phi - lr * g, b.b_users, b.b_labels, b.b_mask)

  la, lb = hand(c.gen)
  np.testing.assert_allclose(float(aux["loss_a"]), float(la), rtol=1e-5)
  np.testing.assert_allclose(float(aux["loss_b"]), float(lb), rtol=1e-5)
  np.testing.assert_allclose(float(got), alpha * float(la) + (1 - alpha) * float(lb), rtol=1e-5)
  assert abs(float(la) - float(lb)) > 1e-6  # the warm-up step moved the embedding


def _loop_equals_vmap(batch_loss, item_loss, params, batch, n):
  loss, grads = jax.jit(jax.value_and_grad(lambda p: batch_loss(p, batch)[0]))(params)
  one = jax.jit(jax.value_and_grad(lambda p, i: item_loss(p, i)[0]))
  per = [one(params, jnp.int32(i)) for i in range(n)]
  np.testing.assert_allclose(float(loss), np.mean([float(l) for l, _ in per]), rtol=1e-5)
  loop = jax.tree_util.tree_map(lambda *g: sum(g) / n, *[g for _, g in per])
  for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(loop)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads))


def _row(batch, i):  # idw.row with a traced index
  return jax.tree_util.tree_map(lambda x: x[i], batch)


def test_vmapped_item_losses_equal_the_per_item_loop():
  c = case()
  f, f0, batch, n = c.prep.features, idw.as_new_items(c.prep.features), c.batch, c.batch.item.shape[0]
  content = c.setup.content(c.params, f, batch.item)
  meta = idw.metaemb_batch_loss(c.setup, 0.2, 0.3)
  _loop_equals_vmap(lambda p, b: meta(p, c.params, f, b), lambda p, i: idw.metaemb_item_loss(
      c.setup, 0.2, 0.3, p, c.params, f0, content[i], _row(batch, i)), c.gen, batch, n)
  key = jax.random.PRNGKey(11)
  mw = idw.mwuf_batch_loss(c.mwuf_setup, 0.5)
  history = idw.mean_user_vectors(c.mwuf_setup, c.params, f, batch.users, batch.users_mask)
  no_history = jax.random.bernoulli(key, 0.5, batch.item.shape)
  assert 0 < int(no_history.sum()) < n  # both kinds of item in the batch
  ids = f.item[ID_FIELD][batch.item]
  _loop_equals_vmap(lambda p, b: mw(p, c.params, f, b, key), lambda p, i: idw.mwuf_item_loss(
      c.mwuf_setup, p, c.params, f0, content[i], ids[i], history[i], no_history[i], _row(batch, i)),
      c.mwuf, batch, n)


def test_padding_changes_nothing():
  c = case()
  longer = jax.device_put(idw.item_tasks(c.prep.split.train, cap=12, pad_to=40, seed=0))
  assert longer.items.shape[1] == 40 > c.tasks.items.shape[1]
  short = _sample(c.tasks, jax.random.PRNGKey(1), 5, PAIRS)
  long = _sample(longer, jax.random.PRNGKey(1), 5, PAIRS)
  for name in ("item", "a_users", "a_labels", "a_mask", "b_users", "b_labels", "b_mask"):
    np.testing.assert_array_equal(np.asarray(getattr(short, name)), np.asarray(getattr(long, name)))
  f, key = c.prep.features, jax.random.PRNGKey(2)
  for loss, p in ((idw.metaemb_batch_loss(c.setup, 0.1, 0.3), c.gen), (idw.mwuf_batch_loss(c.mwuf_setup, 0.5), c.mwuf)):
    run = jax.jit(lambda b, loss=loss, p=p: loss(p, c.params, f, b, key)[0])
    np.testing.assert_allclose(float(run(short)), float(run(long)), rtol=1e-6)
  # a and b are disjoint draws of the item's own ratings; masked slots hold user 0 and label 0
  tasks = jax.tree_util.tree_map(np.asarray, c.tasks)
  for i in range(5):
    row = int(np.flatnonzero(tasks.user == int(short.item[i]))[0])
    own = set(tasks.items[row, :tasks.lengths[row]].tolist())
    a = set(np.asarray(short.a_users[i])[np.asarray(short.a_mask[i])].tolist())
    bb = set(np.asarray(short.b_users[i])[np.asarray(short.b_mask[i])].tolist())
    assert a and bb and a <= own and bb <= own and not a & bb


def test_negative_users_never_interacted_with_the_item():
  c = case()
  seen = seen_matrix(c.prep.split.train, c.prep.data.num_users, c.prep.data.num_items)
  batch = _sample(c.tasks, jax.random.PRNGKey(1), 6, PAIRS)
  logits = jnp.asarray(pool_logits(np.unique(c.prep.split.train.user), c.prep.data.num_users))
  neg = jax.jit(idw.with_negative_users, static_argnums=(4,))(batch, jax.random.PRNGKey(2), logits,
                                                                jnp.asarray(seen), 2)
  assert neg.a_users.shape == (6, PAIRS * 3)
  labels, users, mask = (np.asarray(x) for x in (neg.a_labels, neg.a_users, neg.a_mask))
  np.testing.assert_array_equal(mask.reshape(6, PAIRS, 3)[..., 0], np.asarray(batch.a_mask))
  assert np.all(labels.reshape(6, PAIRS, 3)[..., 1:] == 0)
  for i in range(6):
    negs = users[i][(labels[i] == 0) & mask[i]]
    assert len(negs) and not seen[negs, int(batch.item[i])].any()
    np.testing.assert_array_equal(users[i].reshape(PAIRS, 3)[:, 0][np.asarray(batch.a_mask[i])],
                                  np.asarray(batch.a_users[i])[np.asarray(batch.a_mask[i])])


def test_a_short_training_lowers_the_loss():
  c = case()
  f = c.prep.features
  for loss_fn, params in ((idw.metaemb_batch_loss(c.setup, 0.1, 0.1), c.setup.net.init(
      jax.random.PRNGKey(2), content_width(c.model), c.gen["mean"])), (idw.mwuf_batch_loss(c.mwuf_setup, 0.5), c.mwuf)):
    opt = optax.adam(0.03)
    key = jax.random.PRNGKey(4)

    @jax.jit
    def step(p, s):
      (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(p, c.params, f, c.batch, key)
      u, s = opt.update(g, s, p)
      return optax.apply_updates(p, u), s, loss

    state, losses = opt.init(params), []
    for _ in range(25):
      params, state, loss = step(params, state)
      losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0], losses


def test_config_checks():
  c = tiny_config()
  c.methods = ("metaemb", "mwuf")
  c.variants.metaemb_bad = {"base": "metaemb", "id_warmup": {"base": "melu_plus_bad"}}
  c.variants.melu_plus_bad = ("meta.learner=melu", "model.residual=true")
  c.variants.mwuf_self = {"base": "mwuf", "id_warmup": {"base": "metaemb"}}
  validate(c)
  me, mw = resolve("metaemb", c), resolve("mwuf", c)
  assert me.reads_key("metaemb.alpha") and not mw.reads_key("metaemb.alpha") and mw.reads_key("id_warmup.base")
  assert me.base_method().config.model.item_id  # forced on the base
  for name, match in (("metaemb_bad", "needs the user's support set"), ("mwuf_self", "warm-up method itself")):
    c.methods = (name,)
    with pytest.raises(ConfigError, match=match):
      validate(c)


def _run_config():
  c = tiny_config()
  c.methods = ("metaemb", "mwuf")
  c.eval.scenarios = ("item_cold",)
  c.train.steps, c.train.eval_every, c.train.checkpoint_every = 4, 4, 4
  c.id_warmup.steps, c.id_warmup.items_per_batch, c.id_warmup.pairs = 4, 6, 4
  return c


def test_a_run_gives_item_cold_rows_and_serves(tmp_path):
  from metarec_jax import run
  from metarec_jax.serving import Recommender
  c = _run_config()
  c.methods = ("pooled_id", "metaemb", "mwuf")  # the run lists the base with model.item_id=true: both reuse it
  c.variants.pooled_id = {"base": "pooled", "model": {"item_id": True}}
  c.id_warmup.base = "pooled_id"
  out = run(c, workdir=tmp_path / "run", progress=False, verbose=False)
  rows = {(r["method"], r["scenario"]): r for r in out["rows"]}
  assert set(rows) == {("pooled_id", "item_cold"), ("metaemb", "item_cold"), ("mwuf", "item_cold")}
  assert all(np.isfinite(r["mae"]) for r in rows.values())
  ckpts = {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
  assert ckpts == {"pooled_id__seed0", "metaemb__seed0", "mwuf__seed0"}, ckpts
  rec = Recommender.load(tmp_path / "run", method="mwuf")
  scorer = rec.adapt([3, 5, 7], [5.0, 1.0, 4.0])
  items, scores = scorer.top_k(4)
  assert len(items) == 4 and not set(items.tolist()) & {3, 5, 7} and np.all(np.isfinite(scores))
  ids = np.asarray(rec.features.item[ID_FIELD])
  unknown = scorer.scores()[ids == 0]
  assert len(unknown) > 2 and np.std(unknown) > 1e-6  # each new item its own embedding, not the shared row
