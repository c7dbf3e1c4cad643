"""The LLM-era item-cold benchmark on ML-1M with the items' plot text: `cold_items_ml1m.py` + MiniLM embeddings.

First embed the plots once (about 3 CPU-minutes; needs `pip install -e ".[text]"`):

  metarec features text $METAREC_DATA/melu-ml1m --field plot --out runs/features/melu_ml1m_plot.npy

Command:   metarec run experiments/cold_items_ml1m_text.py --seeds 5
Runtime:   29 min wall for 5 seeds on the shared 2-core CPU with other jobs beside it.
Expected:  cold, mean ± std over seeds 0-4, recall@20 / ndcg@20 / auc (measured):
             pooled_text      0.1621 ± 0.0237 / 0.1856 ± 0.0356 / 0.6544 ± 0.0181
             dropoutnet_text  0.1418 ± 0.0092 / 0.1721 ± 0.0251 / 0.6561 ± 0.0188
             maml_text        0.1575 ± 0.0211 / 0.1816 ± 0.0339 / 0.6592 ± 0.0076
           against pooled 0.1633 / 0.1866, dropoutnet 0.1458 / 0.1651, maml 0.1656 / 0.1918 without text
           (`cold_items_ml1m.py`): the plot embedding adds nothing measurable on this protocol.

The protocol, training and evaluation of `cold_items_ml1m.py`; the items
also carry ``text_emb``, the 384-dim MiniLM embedding of their plot (a dense
field, a linear map to the field width trained in the outer loop), in
``pooled_text``, ``dropoutnet_text`` and ``maml_text``. The cache may be
named with ``METAREC_TEXT_FEATURES``.
"""

import importlib.util
import os
import pathlib

from metarec_jax import apply_overrides
from metarec_jax.methods.presets import PRESETS

_base = pathlib.Path(__file__).with_name("cold_items_ml1m.py")
_spec = importlib.util.spec_from_file_location("cold_items_ml1m_base", _base)
cold_items_ml1m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cold_items_ml1m)

TEXT_FEATURES = os.environ.get("METAREC_TEXT_FEATURES", "runs/features/melu_ml1m_plot.npy")


def get_config():
  c = cold_items_ml1m.get_config()
  c.name = "cold_items_ml1m_text"
  c.model.text_features = TEXT_FEATURES
  c.model.item_fields = ("rate", "genre", "director", "actor")
  with_text = "model.item_fields=rate,genre,director,actor,text_emb"
  c.variants.pooled_text = ("base=pooled", with_text)
  c.variants.dropoutnet_text = lambda cfg: apply_overrides(PRESETS["dropoutnet"](cfg), (with_text,))
  c.variants.maml_text = ("base=maml", with_text)
  c.methods = ("pooled_text", "dropoutnet_text", "maml_text")
  return c
