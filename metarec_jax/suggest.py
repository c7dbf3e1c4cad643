""""Did you mean": the closest known names to a mistyped one, for error messages."""

from __future__ import annotations

import difflib
from typing import Iterable


def _ratio(a: str, b: str) -> float:
  return difflib.SequenceMatcher(None, a, b).ratio()


def _split(name: str) -> tuple[str, str]:
  """``("a.b", "c")`` for ``a.b.c`` and ``("dir", "f.py")`` for ``dir/f.py``."""
  if "/" in name:
    head, _, leaf = name.rpartition("/")
  else:
    head, _, leaf = name.rpartition(".")
  return head, leaf


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
  """Up to ``n`` names of ``known`` closest to ``name``, best first.

  Dotted config keys also count as matches on their last part (``lr`` finds
  ``optimizer.lr``), and paths on their file name. Only names nearly as close
  as the best one are kept, so a clear typo gets one suggestion.
  """
  head, leaf = _split(name)
  scored = []
  for k in sorted(set(known)):
    k_head, k_leaf = _split(k)
    if k_head == head:  # same block or folder: only the last part can be mistyped
      score = _ratio(leaf, k_leaf)
    else:
      score = max(_ratio(name, k), _ratio(leaf, k_leaf) - 0.1)
    if score >= 0.6:
      scored.append((score, k))
  if not scored:
    return []
  scored.sort(key=lambda s: (-s[0], s[1]))
  best = scored[0][0]
  return [k for s, k in scored if s >= best - 0.08][:n]


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
  """``"; did you mean 'a' or 'b'?"`` for the closest names, or ``""`` when none is close."""
  found = close_matches(name, known, n)
  if not found:
    return ""
  quoted = [repr(f) for f in found]
  return "; did you mean " + (" or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)) + "?"
