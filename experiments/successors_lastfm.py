"""MeLU's successors on Last.fm implicit feedback (new users), beside MAML and the implicit baselines.

Command:   metarec run experiments/successors_lastfm.py --seeds 3
           (data.path defaults to $METAREC_DATA/lastfm-hetrec2011-2k when METAREC_DATA is set)
Protocol:  exactly experiments/maml_lastfm.py's (it is loaded from there): an artist played at least
           50 times is a positive; users with 13..100 positives split 8:1:1 into meta-training /
           validation / test users (scenario user_cold); support up to 20 positives, query 10, each
           joined by 4 sampled unseen artists inside the jitted step; loss BCE; each query positive
           ranked against 99 sampled negatives (table user_cold) and against every unseen artist
           (user_cold:all); selection on validation AUC.
Methods:   popularity and pooled (baselines), maml; the successors that their papers or
           RecBole-MetaRec run on implicit feedback: tanp (TaNP evaluates on Last.fm), coldnas
           (ColdNAS evaluates on Last.fm), mamo, cmml, lwa and nlba (RecBole-MetaRec's CTR setting).
           Every one trains with maml_lastfm.py's outer settings (Adam 3e-3, 150 steps of 32 users).
           coldnas runs the structure ColdNAS's reference code searched on Last.fm (model_lfm4.py:
           add / add / max+add / none at the input and the three hidden layers), not the ML-1M default.
           This file keeps our implicit protocol for every method (README "MeLU's successors" says
           where the papers' own Last.fm protocols differ), so all are scored on the same candidates.
Runtime:   and Expected: README "MeLU's successors" has the measured table and the runtime.
"""

import pathlib

from metarec_jax import load_experiment


def get_config():
  c = load_experiment(pathlib.Path(__file__).with_name("maml_lastfm.py"))
  c.name = "successors_lastfm"
  c.methods = ("popularity", "pooled", "maml", "tanp", "coldnas", "mamo", "cmml", "lwa", "nlba")
  c.coldnas_fixed.ops = ("add", "add", "max+add", "none")  # the reference's searched Last.fm model
  return c
