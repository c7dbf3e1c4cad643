"""MeLU on its ML-1M release, with and without the items' plot embedded by MiniLM.

First embed the plots once (about 4 CPU-minutes; needs `pip install -e ".[text]"`):

  metarec features text $METAREC_DATA/melu-ml1m --field plot --out runs/features/melu_ml1m_plot.npy

Command:   metarec run experiments/melu_ml1m_text.py --seeds 3
Runtime:   17 min for 3 seeds without global_mean (shared 2-core CPU, about
           1.5-2.3 min per learned method and seed).
Expected:  MAE, mean ± std over seeds 0-2 (measured):
             method              item_cold        user_item_cold
             item_mean_user_bias 0.8875 ± 0.0036  0.8770 ± 0.0018
             melu1               0.9247 ± 0.0092  0.9239 ± 0.0092
             melu1_text          0.9072 ± 0.0137  0.9061 ± 0.0100
             melu1_text_frozen   0.9043 ± 0.0070  0.8998 ± 0.0104
           the plot text lowers MeLU's item-cold and user+item-cold MAE
           (melu1_text: in every seed); warm 0.7439 -> 0.7419, user_cold
           0.7506 -> 0.7475.

The MeLU configuration of `melu_ml1m.py` (one 32-dim embedding per field,
64 -> 64 -> 1 decision layers adapted in the inner loop). ``text_emb`` is the
384-dim plot embedding as one more dense item field: a linear map to 32 dims
trained in the outer loop (``melu1_text``), or frozen at its random
initialisation (``melu1_text_frozen``, ``model.freeze``), which keeps the
text's geometry as a random projection.
"""

import importlib.util
import os
import pathlib

_base = pathlib.Path(__file__).with_name("melu_ml1m.py")
_spec = importlib.util.spec_from_file_location("melu_ml1m_base", _base)
melu_ml1m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(melu_ml1m)

TEXT_FEATURES = os.environ.get("METAREC_TEXT_FEATURES", "runs/features/melu_ml1m_plot.npy")
MELU_ITEMS = "rate,genre,director,actor"


def get_config():
  c = melu_ml1m.get_config()
  c.name = "melu_ml1m_text"
  c.eval.selection = "warm"  # the numbers above were measured with warm-user selection
  c.model.text_features = TEXT_FEATURES
  c.methods = ("global_mean", "item_mean_user_bias", "melu1", "melu1_text", "melu1_text_frozen")
  c.variants.melu1_text = ("meta.learner=melu", "meta.inner_steps=1", f"model.item_fields={MELU_ITEMS},text_emb")
  c.variants.melu1_text_frozen = c.variants.melu1_text + ("model.freeze=extractor/item/text_emb",)
  return c
