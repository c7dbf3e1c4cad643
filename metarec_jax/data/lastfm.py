"""Last.fm HetRec 2011 (hetrec2011-lastfm-2k) reader: play counts and the friend graph.

Files (tab-separated, one header line each):

* ``user_artists.dat``: ``userID artistID weight``; weight = the user's play
  count of the artist (each user's top artists, about 50 per user);
* ``user_friends.dat``: ``userID friendID`` (directed rows; the release lists
  both directions of a friendship);
* ``artists.dat``: ``id name url pictureURL`` (UTF-8).

The interactions hold play counts as their value; ``data.feedback=implicit``
with ``data.positive_threshold=N`` makes "played at least N times" a positive
(`data.implicit`); plays are no ratings, so the loader refuses rating feedback
(see `config.validate`). Features: user ``friends`` (multi-hot list of friend
user ids: side information a new user brings), item ``artist`` (the artist id
as a categorical field). The release has no user demographics and this copy
no artist tags.
"""

from __future__ import annotations

import pathlib

import numpy as np

from metarec_jax.data.checks import Reporter, clean_ratings
from metarec_jax.data.interactions import Dataset, FeatureTable, FieldSpec, Interactions
from metarec_jax.data.parsing import check_unique_ids, lookup, read_table, require, require_rows

SOURCE = "https://grouplens.org/datasets/hetrec-2011/ (hetrec2011-lastfm-2k.zip)"


def load_lastfm(path: str | pathlib.Path, *, bad_rows: str = "error", duplicates: str = "last") -> Dataset:
  """Reads the HetRec 2011 Last.fm release.

  Args:
    path: the folder with ``user_artists.dat``, ``user_friends.dat`` and ``artists.dat``.
    bad_rows: ``"error"`` or ``"drop"``: play counts below 1 and artist ids that
      ``artists.dat`` lacks (see `checks`).
    duplicates: rule for repeated (user, artist) pairs (see `checks`).

  Returns:
    A `Dataset` with play counts as interaction values (``rating_scale`` is
    ``(1, max plays)``), users numbered by sorted user id.

  Raises:
    MissingDataFile: a file is absent.
    DataError: a file is malformed (names the file, line and field).
  """
  d = pathlib.Path(path)
  reporter = Reporter(bad_rows)
  get = lambda name: require(d, name, source=SOURCE)
  artists = require_rows(read_table(get("artists.dat"), "\t", ("id", "name", "url", "picture"), header=True),
                         "artists")
  item_raw = artists.ints("id")
  check_unique_ids(item_raw, artists, "id")
  plays = require_rows(read_table(get("user_artists.dat"), "\t", ("user_id", "artist_id", "weight"), header=True),
                       "play counts")
  friends = read_table(get("user_friends.dat"), "\t", ("user_id", "friend_id"), header=True)
  # Play counts are whole numbers: a fraction is a sign of another file (or column) than HetRec's.
  raw_u, raw_i, weight = plays.ints("user_id"), plays.ints("artist_id"), plays.ints("weight").astype(np.float64)
  f_user, f_friend = friends.ints("user_id"), friends.ints("friend_id")
  user_raw = np.unique(np.concatenate([raw_u, f_user, f_friend]))
  describe = lambda rows: [f"line {plays.lines[r]}: user {raw_u[r]} artist {raw_i[r]} plays {weight[r]:g}"
                           for r in rows]
  top = float(weight.max()) if len(weight) else 1.0
  u, i, w, _ = clean_ratings(lookup(user_raw, raw_u), lookup(item_raw, raw_i), weight, None,
                             scale=(1.0, np.inf), source="user_artists.dat", user_table="user ids",
                             item_table="artists.dat", describe=describe, reporter=reporter,
                             duplicates=duplicates, noun="play count", item_noun="artist")
  n_users = len(user_raw)
  fu, ff = lookup(user_raw, f_user), lookup(user_raw, f_friend)
  pairs = np.unique(fu.astype(np.int64) * n_users + ff)
  src, dst = pairs // n_users, (pairs % n_users).astype(np.int32)
  degree = np.bincount(src, minlength=n_users)
  width = max(int(degree.max()) if n_users else 1, 1)
  starts = np.concatenate([[0], np.cumsum(degree)[:-1]])
  column = np.zeros((n_users, width), np.int32)
  column[src, np.arange(len(src)) - starts[src]] = dst + 1   # id = user row + 1; 0 pads
  users = FeatureTable((FieldSpec("friends", "multi", vocab_size=n_users + 1, width=width),),
                       {"friends": column})
  n_items = len(item_raw)
  items = FeatureTable((FieldSpec("artist", "categorical", vocab_size=n_items + 1),),
                       {"artist": np.arange(1, n_items + 1, dtype=np.int32)})
  return Dataset(name="lastfm-hetrec2011", interactions=Interactions(u, i, w), users=users, items=items,
                 rating_scale=(1.0, max(top, 1.0)), user_raw_ids=user_raw, item_raw_ids=item_raw,
                 notes=tuple(reporter.notes), source=f"lastfm {d}")


__all__ = ["load_lastfm"]
