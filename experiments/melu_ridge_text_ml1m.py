"""The best configuration (`melu_ridge`) with the items' plot and title embedded by MiniLM.

First embed the texts once (about 3 CPU-minutes; needs `pip install -e ".[text]"`):

  metarec features text $METAREC_DATA/melu-ml1m --field plot --out runs/features/melu_ml1m_plot.npy
  metarec features text $METAREC_DATA/melu-ml1m --field title --out runs/features/melu_ml1m_title.npy

Command:   metarec run experiments/melu_ridge_text_ml1m.py --seeds 3
Runtime:   59 min wall for the first four methods and 3 seeds on the shared 2-core CPU with two other
           jobs beside it; about 12 min per seed of one `textridge` variant.
Expected:  MAE, mean ± std over seeds 0-2 (measured; README "Text in the best configuration"):
             method                  warm             user_cold        item_cold        user_item_cold
             item_mean_user_bias     0.7337 ± 0.0098  0.7377 ± 0.0070  0.8861 ± 0.0023  0.8774 ± 0.0032
             melu_ridge              0.7119 ± 0.0114  0.7201 ± 0.0071  0.8714 ± 0.0015  0.8642 ± 0.0056
             melu_ridge_text         0.7265 ± 0.0178  0.7323 ± 0.0061  0.8933 ± 0.0028  0.8950 ± 0.0061
             melu_ridge_text_frozen  0.7224 ± 0.0147  0.7291 ± 0.0050  0.8879 ± 0.0070  0.8908 ± 0.0112
           melu_ridge_textridge (seeds 0, 1) 0.7472 / 0.7625 / 0.9486 / 0.9500; melu_ridge_textridge_damped
           (seed 0) 0.7084 / 0.7275 / 0.8763 / 0.8768. The text does not help the best configuration.

`melu_ml1m.py`'s `melu_ridge` (MeLU's local update of the decision layers,
residual over item mean + support user bias, item id and statistics,
support-set user vector, a closed-form ridge user vector over 16 learned
item factors, item-cold simulation on 30% of the items per batch), and the
same with two more dense item fields, ``plot_emb`` and ``title_emb`` (the
384-dim MiniLM sentence embeddings of each movie's plot and title):

* ``melu_ridge_text``: a linear map of each text field to 32 dims, trained in
  the outer loop. The text reaches every part of the model that reads item
  features: the decision layers, the support-set user vector and the ridge
  item factors (``q_i = [1, W f_i]``, so a cold item's factors come from its
  text and side information), which is what the per-user ridge solve adapts
  over.
* ``melu_ridge_text_frozen``: the same with the text maps frozen at their
  random initialisation (``model.freeze``): the text's geometry kept as a
  random projection.

* ``melu_ridge_textridge``: the text enters the ridge item factors only
  (``model.ridge_fields``: 16 more factors ``C c_i`` with prior 0, solved
  from each user's support ratings), never the decision layers or the
  extractor, so the outer loop cannot memorise an item's quality through its
  unique text. Its content factors start at the other factors' penalty (5);
  ``melu_ridge_textridge_damped`` starts them at 100 (nearly off) and lets the
  outer loop open them.

``METAREC_TEXT_FEATURES`` may name other caches (``NAME=FILE.npy,...``; the
variants read fields ``plot_emb`` and ``title_emb``).
"""

import importlib.util
import os
import pathlib

_base = pathlib.Path(__file__).with_name("melu_ml1m.py")
_spec = importlib.util.spec_from_file_location("melu_ml1m_base", _base)
melu_ml1m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(melu_ml1m)

TEXT_FEATURES = os.environ.get("METAREC_TEXT_FEATURES", "plot_emb=runs/features/melu_ml1m_plot.npy,"
                                                        "title_emb=runs/features/melu_ml1m_title.npy")
RIDGE_ITEMS = "rate,genre,director,actor,year,writer"


def get_config():
  c = melu_ml1m.get_config()
  c.name = "melu_ridge_text_ml1m"
  c.eval.train_users = False
  c.model.text_features = TEXT_FEATURES
  c.methods = ("item_mean_user_bias", "melu_ridge", "melu_ridge_text", "melu_ridge_text_frozen",
               "melu_ridge_textridge", "melu_ridge_textridge_damped")
  c.variants.melu_ridge_text = c.variants.melu_ridge + (f"model.item_fields={RIDGE_ITEMS},plot_emb,title_emb",)
  c.variants.melu_ridge_text_frozen = c.variants.melu_ridge_text + ("model.freeze=extractor/item/(plot_emb|title_emb)",)
  c.variants.melu_ridge_textridge = c.variants.melu_ridge + ("model.ridge_fields=plot_emb,title_emb",
                                                             "model.ridge_content_reg=5.0")
  c.variants.melu_ridge_textridge_damped = c.variants.melu_ridge + ("model.ridge_fields=plot_emb,title_emb",)
  return c
