"""Cost-growth library: task sets of recent ratings, reading back, tables (no timing of steps here)."""

from __future__ import annotations

import json

import numpy as np

from metarec_jax.bench import growth
from metarec_jax.data.interactions import Interactions


def test_recent_taskset_keeps_each_users_newest_ratings():
  inter = Interactions(user=[0, 0, 0, 2, 0], item=[1, 2, 3, 4, 5], rating=[1, 2, 3, 4, 5], timestamp=[5, 1, 9, 0, 7])
  t = growth.recent_taskset(inter, num_users=3, max_length=2)
  assert t.user.tolist() == [0, 1, 2] and t.lengths.tolist() == [2, 0, 1]
  assert t.items.tolist() == [[3, 5], [0, 0], [4, 0]] and t.ratings[0].tolist() == [3.0, 5.0]


def test_make_ratings_and_read_back(tmp_path):
  spec = growth.GrowthSpec(users=300, items=200, mean_history=25)
  data = growth.make_ratings(spec)
  counts = np.bincount(data.interactions.user, minlength=300)
  assert len(data.interactions) == 300 * 25 and counts.min() >= 20
  folder = tmp_path / "r"
  folder.mkdir()
  from metarec_jax.data.movielens import write_ratings_csv
  inter = data.interactions
  write_ratings_csv(folder / "ratings.csv", inter.user + 1, inter.item + 1, inter.rating, inter.timestamp)
  got = growth.read_back(folder, spec.max_task)
  assert (got["ratings"], got["users"], got["tasks"]) == (300 * 25, 300, 300)
  assert got["peak_rss_mb"] >= got["base_rss_mb"] > 0


def _row(users, items, ids=False, **kw):
  return {"users": users, "items": items, "item_ids": ids, "ratings": users * 40, "step_ms": 3.0,
          "step_xla_mb": 12.0, "eval_s": users / 1e4, "eval_users_per_s": 1e4, "eval_xla_mb": 25.0,
          "load_read_s": 1.0, "load_peak_rss_mb": 500.0, "peak_rss_mb": 900.0, **kw}


def test_update_merges_points_and_draws_tables(tmp_path):
  meta = {"base_users": 100, "base_items": 30, "machine": "m", "workload": "w"}
  growth.update(tmp_path, [_row(10, 30), _row(100, 30)], meta)
  merged = growth.update(tmp_path, [_row(100, 30, step_ms=9.0), _row(100, 500), _row(100, 500, True)],
                         skipped={"1M users": "RAM"})
  assert [(r["users"], r["items"], r["item_ids"]) for r in merged["rows"]] == [
      (10, 30, False), (100, 30, False), (100, 500, False), (100, 500, True)]
  assert json.loads((tmp_path / "growth.json").read_text()) == merged
  md = (tmp_path / "growth.md").read_text()
  assert "## Against users (30 items)" in md and "## Against items (100 users)" in md
  assert "| 100 | 30 | 4,000 | 9.00 | – | 12.0 |" in md and "| 100 | 500 + ids |" in md and "1M users: RAM" in md
  assert (tmp_path / "growth.png").stat().st_size > 0
