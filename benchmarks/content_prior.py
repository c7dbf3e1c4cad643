"""Benchmark: how much an item's content says about its mean rating, on training items and on cold items.

Command:   python benchmarks/content_prior.py [--text plot_emb=runs/features/melu_ml1m_plot.npy,...] [--seed 0]
           (needs METAREC_DATA; the text caches from `metarec features text`, see
           experiments/melu_ridge_text_ml1m.py)
Measured:  README "Text in the best configuration"; 3.5 CPU-minutes, no training (21 min wall under load 8).

For each set of item fields, `data.content_prior.fit_content_prior` fits the
ridge prior of item means on the meta-training ratings of MeLU's ML-1M split
(seed 0) and prints the penalty it chose, its weighted leave-one-item-out MAE
on the training items' means beside that of the global mean μ, and the MAE
of the prior alone (no user term) on every test scenario's ratings beside
μ's. A prior that helps on training items but not on the cold items of a
later period is what the item-cold scenarios then measure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib

import numpy as np

from metarec_jax.data.content_prior import content_matrix, fit_content_prior
from metarec_jax.data.registry import load_dataset
from metarec_jax.data.splits import make_split
from metarec_jax.prepared import with_model_inputs

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIELD_SETS = (("rate", "genre"), ("rate", "genre", "director"), ("plot_emb",), ("title_emb",),
              ("plot_emb", "title_emb"), ("rate", "genre", "plot_emb", "title_emb"))


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--text", default="plot_emb=runs/features/melu_ml1m_plot.npy,"
                                    "title_emb=runs/features/melu_ml1m_title.npy")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
  args = ap.parse_args()
  spec = importlib.util.spec_from_file_location("melu_ml1m", ROOT / "experiments" / "melu_ml1m.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  c.model.text_features = args.text
  data = with_model_inputs(load_dataset(c.data), c)
  split = make_split(data, c.data.protocol, args.seed, valid_share=c.data.valid_share,
                     warm_test_share=c.data.warm_test_share)
  mu = float(split.train.rating.mean())
  out = {"mu": {s: float(np.abs(t.rating - mu).mean()) for s, t in split.tests.items()}, "fields": []}
  for fields in FIELD_SETS:
    if any(f not in data.items.columns for f in fields):
      continue
    fit = fit_content_prior(content_matrix(data.items, fields), split.train, c.model.item_mean_reg, fields=fields)
    out["fields"].append({"fields": list(fields), "reg": fit.reg, "train_loo_mae": fit.loo_mae,
                          "train_mu_mae": fit.base_mae,
                          "test_mae": {s: float(np.abs(fit.prior[t.item] - t.rating).mean())
                                       for s, t in split.tests.items()}})
  if args.json:
    print(json.dumps(out, indent=1))
    return
  scenarios = list(out["mu"])
  print(f"{'content fields':36s} {'λ':>6s} {'train LOO':>9s} " + " ".join(f"{s:>14s}" for s in scenarios))
  print(f"{'(none: μ)':36s} {'':6s} {out['fields'][0]['train_mu_mae']:9.4f} "
        + " ".join(f"{out['mu'][s]:14.4f}" for s in scenarios))
  for row in out["fields"]:
    print(f"{','.join(row['fields']):36s} {row['reg']:6g} {row['train_loo_mae']:9.4f} "
          + " ".join(f"{row['test_mae'][s]:14.4f}" for s in scenarios))


if __name__ == "__main__":
  main()
