"""MeLU's ML-1M release with a transformer over the feature fields as the extractor.

Command:   metarec run experiments/field_transformer_ml1m.py --seeds 3
Runtime:   see the README's "Field transformer" section (measured there).
Expected:  see the README's "Field transformer" table, beside MeLU's
           embedding (MLP-head) extractor on the same splits.

Every method is MeLU's learner (decision layers adapted in the inner loop, the
extractor meta-trained in the outer loop); only the extractor differs:

* ``melu1``: MeLU's extractor, one 32-dim embedding per field, concatenated;
* ``melu1_ft``: each field a 32-dim token, 2 pre-norm transformer blocks
  (4 heads), the [CLS] token as the feature vector (``SIZES["small"]``);
* ``melu_plus_ft``: the residual configuration of `melu_ml1m.py` (item id,
  item statistics, support-set vector, item-cold simulation) with the
  transformer extractor.

Larger towers (``--set model.transformer.size=large``, ``xl`` ~300M params per
tower) are for accelerators: add ``model.dtype=bfloat16`` and
``model.transformer.remat=true``.
"""

import importlib.util
import pathlib

_base = pathlib.Path(__file__).with_name("melu_ml1m.py")
_spec = importlib.util.spec_from_file_location("melu_ml1m_base", _base)
melu_ml1m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(melu_ml1m)

TRANSFORMER = ("model.extractor=transformer", "model.transformer.size=small")


def get_config():
  c = melu_ml1m.get_config()
  c.name = "field_transformer_ml1m"
  c.methods = ("item_mean_user_bias", "melu1", "melu1_ft", "melu_plus", "melu_plus_ft")
  c.variants.melu1_ft = c.variants.melu1 + TRANSFORMER
  c.variants.melu_plus_ft = c.variants.melu_plus + TRANSFORMER
  return c
