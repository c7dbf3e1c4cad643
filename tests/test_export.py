"""Exporting a run as a self-contained artifact (jax.export + weights) and loading it without the framework."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarec_jax import experiment
from metarec_jax.cli import main
from metarec_jax.data.derived import ITEM_MEAN
from metarec_jax.data.tasks import Features, features_from_tables
from metarec_jax.export import (FORMAT_VERSION, LOADER_COPY, MANIFEST, SERVER_COPY, RequestError, export_recommender,
                                export_run, load_artifact, support_buckets)
from metarec_jax.meta.learners import init_meta_params, learner_spec
from metarec_jax.models.model import RecModel, init_params
from metarec_jax.serving import Recommender
from tests.conftest import tiny_config

SUPPORT = [5, 17, 2, 40, 33, 9]
RATINGS = [5.0, 1.0, 4.0, 2.0, 3.0, 5.0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  c = tiny_config()
  c.methods = ("global_mean", "anil")
  wd = tmp_path_factory.mktemp("export") / "wd"
  experiment.run(c, wd, progress=False, verbose=False)
  return wd


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
  out = tmp_path_factory.mktemp("artifact") / "anil"
  manifest = export_run(tiny_run, out, k_max=30, max_support=100)
  return out, manifest


def assert_same_top_k(rec: Recommender, art, rows, ratings, k, user_id=None, user=None, exclude_seen=True):
  """The artifact's top ``k`` are the recommender's (its top k_max, sliced: one compile per bucket)."""
  row = rec.user_row(user_id, user)
  want_ids, want_scores = rec.adapt(rows, ratings, user_features=row).top_k(art.k_max, exclude_seen=exclude_seen)
  got_ids, got_scores = art.recommend_rows(rows, ratings, k, {f: np.asarray(v).tolist() for f, v in row.items()},
                                           exclude_seen)
  np.testing.assert_array_equal(got_ids, want_ids[:k])
  np.testing.assert_allclose(got_scores, want_scores[:k], rtol=1e-5, atol=1e-5)


def check_equal(rec: Recommender, art, cases=((6, 3, True), (45, 7, False), (1, None, True))) -> None:
  """Support sizes (buckets 32, 64; one rating), user rows and exclude_seen, then a k below k_max."""
  assert art.method == rec.name and art.num_items == rec.num_items
  rng = np.random.default_rng(0)
  for n, user_id, exclude in cases:
    rows = rng.choice(rec.num_items, size=n, replace=False)
    assert_same_top_k(rec, art, rows, rng.integers(1, 6, size=n).astype(float), art.k_max, user_id=user_id,
                      exclude_seen=exclude)
  assert_same_top_k(rec, art, SUPPORT, RATINGS, 7, user={rec.user_fields[0].name: 1})  # k < k_max: a slice


def test_exported_function_equals_the_recommender(tiny_run, exported):
  rec = Recommender.load(tiny_run)
  assert rec.caches_items  # ANIL: the item features are computed once, a weight of the artifact
  art = load_artifact(exported[0])
  check_equal(rec, art)
  ids, scores = art.recommend(SUPPORT, RATINGS, k=10)  # no raw ids in the synthetic data: rows in, rows out
  assert len(ids) == 10 and not set(SUPPORT) & set(ids.tolist()) and np.all(np.diff(scores) <= 0)


def test_support_dependent_scores_adapted_item_tower_fixed_lengths_raw_ids(tiny_data, tmp_path):
  # MAML (the item tower adapts: nothing cached) on a residual support-vector model (the scores depend on the
  # support set), exported one function per bucket, with the data set's raw item ids (strings) in and out.
  features = features_from_tables(tiny_data.users, tiny_data.items)
  n = tiny_data.num_items
  features = Features(user=features.user, item={**features.item, ITEM_MEAN: jnp.linspace(2.5, 4.5, n)})
  model = RecModel(tiny_data.users.specs, tiny_data.items.specs, embed_dim=3, head_hidden=(5,), support_vector=True)
  spec = learner_spec("maml", inner_lr=0.1, inner_steps=1)
  rec = Recommender(model, spec, init_meta_params(spec, init_params(model, features, jax.random.PRNGKey(1))),
                    features, residual=True, name="maml")
  assert not rec.caches_items
  raw = [f"m{1000 + i}" for i in range(n)]
  manifest = export_recommender(rec, tmp_path / "sv", k_max=30, max_support=50, rating_scale=(0.5, 5.0),
                                item_raw_ids=raw, symbolic=False, platforms=("cpu",))
  assert manifest["functions"] == {"32": "function_32.stablehlo", "64": "function_64.stablehlo"}
  assert manifest["item_ids"] == {"kind": "raw", "raw": raw}
  art = load_artifact(tmp_path / "sv")
  check_equal(rec, art, cases=((6, 3, True), (20, None, False)))  # bucket 32 only: each compiles separately
  ids, scores = art.recommend([raw[i] for i in SUPPORT], [0.5, 1, 4, 2, 3, 5], k=4)
  assert all(isinstance(i, str) for i in ids.tolist()) and not set(ids.tolist()) & {raw[i] for i in SUPPORT}
  with pytest.raises(RequestError, match="unknown item id 'm5'"):
    art.recommend(["m5"], [3.0])
  with pytest.raises(RequestError, match=r"items\[0\] must be a string item id"):
    art.recommend([1005], [3.0])
  with pytest.raises(RequestError, match="too many rated items: 51 > 50"):
    art.recommend(raw[:51], [3.0] * 51)


def test_the_manifest_describes_the_artifact(tiny_run, exported):
  out, manifest = exported
  assert {p.name for p in out.iterdir()} == {MANIFEST, "function.stablehlo", "weights.npz", LOADER_COPY, SERVER_COPY}
  on_disk = json.loads((out / MANIFEST).read_text())
  assert on_disk == json.loads(json.dumps(manifest))
  config = json.loads((tiny_run / "config.json").read_text())
  assert manifest["format_version"] == FORMAT_VERSION and manifest["method"] == "anil" and manifest["seed"] == 0
  assert manifest["config"]["model"] == config["model"] and manifest["dataset"] == "synthetic"
  assert manifest["num_items"] == 120 and manifest["k_max"] == 30 and manifest["rating_scale"] == [1.0, 5.0]
  assert manifest["support"] == {"symbolic": True, "buckets": [32, 64, 128], "max": 100, "symbolic_error": None}
  assert manifest["platforms"] == ["cpu", "cuda"] and manifest["functions"] == {"*": "function.stablehlo"}
  assert [f["name"] for f in manifest["user_fields"]] == ["gender", "age", "occupation", "region"]
  assert manifest["user_fields"][0] == {"name": "gender", "kind": "categorical", "vocab_size": 3, "width": 1,
                                        "shape": [], "dtype": "int32"}
  assert manifest["item_ids"] == {"kind": "row", "raw": None}
  names = [leaf["name"] for leaf in manifest["weights"]["leaves"]]
  assert "inner_lr" in names and "item_features" in names and any(n.startswith("meta/") for n in names)
  with np.load(out / "weights.npz") as z:  # the weights read with numpy alone
    assert sorted(z.files) == sorted(leaf["key"] for leaf in manifest["weights"]["leaves"])
  assert support_buckets(60) == [32, 64] and support_buckets(1) == [32] and support_buckets(1024)[-1] == 1024


def test_loading_needs_no_training_code(exported):
  # The artifact's own copy of the loader and the server load it with metarec-jax unimportable.
  out, _ = exported
  script = textwrap.dedent(f"""
      import importlib.abc, json, sys
      class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
          if name.split(".")[0] in ("metarec_jax", "flax", "optax", "orbax", "ml_collections"):
            raise ImportError("blocked: " + name)
      sys.meta_path.insert(0, Block())
      sys.path.insert(0, {str(out)!r})
      import metarec_artifact, metarec_server
      art = metarec_artifact.load_artifact({str(out)!r})
      ids, scores = art.recommend({SUPPORT}, {RATINGS}, k=5, user={{"gender": 1}})
      training = [m for m in sys.modules if m.split(".")[0] in ("metarec_jax", "flax", "optax", "orbax")]
      print(json.dumps({{"ids": ids.tolist(), "training": training}}))
  """)
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  assert got["training"] == [] and len(got["ids"]) == 5
  want, _ = load_artifact(out).recommend(SUPPORT, RATINGS, k=5, user={"gender": 1})
  assert got["ids"] == want.tolist()
  # The package's module is the copy, and imports nothing of the framework at module level.
  import metarec_jax.export as module
  source = open(module.__file__).read()
  assert (out / LOADER_COPY).read_text() == source
  assert not [line for line in source.splitlines() if line.startswith(("import metarec", "from metarec"))]


def test_bad_requests_are_request_errors(exported):
  art = load_artifact(exported[0])
  bad = [
      (dict(items=[], ratings=[]), "items is empty"),
      (dict(items=[1, 2, 1], ratings=[3, 4, 5]), "item 1 appears more than once"),
      (dict(items=[1, 2], ratings=[3]), "2 items but 1 ratings"),
      (dict(items=[1, 120], ratings=[3, 4]), "unknown item id 120"),
      (dict(items=[1, -1], ratings=[3, 4]), "unknown item id -1"),
      (dict(items=[1, "2"], ratings=[3, 4]), r"items\[1\] must be an integer, got a string"),
      (dict(items=[1, True], ratings=[3, 4]), r"items\[1\] must be an integer, got a boolean"),
      (dict(items=5, ratings=[3]), "items must be a list"),
      (dict(items=[1, 2], ratings=[3, 6]), r"ratings\[1\] = 6 is outside the rating scale \[1, 5\]"),
      (dict(items=[1, 2], ratings=[3, float("nan")]), "outside the rating scale"),
      (dict(items=[1, 2], ratings=[3, "4"]), r"ratings\[1\] must be a number"),
      (dict(items=[1, 2], ratings=[3, 4], k=0), r"k must lie in \[1, 30\]"),
      (dict(items=[1, 2], ratings=[3, 4], k=31), r"k must lie in \[1, 30\] \(k_max\)"),
      (dict(items=[1, 2], ratings=[3, 4], k=2.5), "k must be an integer"),
      (dict(items=[1, 2], ratings=[3, 4], user={"nope": 1}), "unknown user field 'nope'"),
      (dict(items=[1, 2], ratings=[3, 4], user={"gender": 3}), r"id 3 outside \[0, 3\)"),
      (dict(items=[1, 2], ratings=[3, 4], user={"gender": [1, 2]}), "takes one id"),
      (dict(items=[1, 2], ratings=[3, 4], user=[1]), "user must be an object"),
      (dict(items=[1, 2], ratings=[3, 4], exclude_seen="yes"), "exclude_seen must be true or false"),
  ]
  for kwargs, reason in bad:
    with pytest.raises(RequestError, match=reason):
      art.recommend(**kwargs)
  rows = list(range(100))  # k is also bounded by the catalogue less the rated items
  with pytest.raises(RequestError, match=r"k must lie in \[1, 20\] \(the catalogue's 120 items less the 100"):
    art.recommend(rows, [3.0] * 100, k=21)
  assert len(art.recommend(rows, [3.0] * 100, k=20)[0]) == 20
  assert len(art.recommend(rows, [3.0] * 100, k=30, exclude_seen=False)[0]) == 30


def test_export_and_load_failures(tiny_run, exported, tmp_path, capsys):
  out, _ = exported
  with pytest.raises(FileNotFoundError, match="not an exported artifact"):
    load_artifact(tmp_path)
  manifest = json.loads((out / MANIFEST).read_text())
  for change, reason in ((dict(platforms=["tpu"]), "exported for tpu, but this machine's jax runs on cpu"),
                         (dict(format_version=FORMAT_VERSION + 1), "is newer than this loader's")):
    broken = tmp_path / f"broken{len(reason)}"
    broken.mkdir()
    for f in out.iterdir():
      (broken / f.name).write_bytes(f.read_bytes())
    (broken / MANIFEST).write_text(json.dumps({**manifest, **change}))
    with pytest.raises(ValueError, match=reason):
      load_artifact(broken)
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("mine")
  assert main(["export", str(tiny_run), "--out", str(tmp_path / "other")]) == 2
  assert main(["export", str(tiny_run), "--out", str(tmp_path / "x"), "--method", "global_mean"]) == 2
  assert main(["export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and "is not an artifact folder" in err[0] and "is a baseline" in err[1]
  assert "not a metarec workdir" in err[2]
  assert (tmp_path / "other" / "notes.txt").read_text() == "mine" and not (tmp_path / "x").exists()


def test_export_command(tiny_run, tmp_path, capsys):
  assert main(["export", str(tiny_run), "--out", str(tmp_path / "a"), "--k-max", "500", "--max-support", "20",
               "--platforms", "cpu", "--no-verify"]) == 0
  printed = capsys.readouterr().out
  assert "exported anil (seed 0, 120 items, k <= 120, support <= 20, cpu; one function, symbolic" in printed
  assert "metarec serve" in printed
  art = load_artifact(tmp_path / "a")
  assert art.k_max == 120 and art.buckets == [32] and art.manifest["platforms"] == ["cpu"]
  with pytest.raises(SystemExit):
    main(["export", "--help"])
  assert "(default: 100)" in capsys.readouterr().out
