"""Fault points: where the kill tests may SIGKILL a run on purpose.

A run passes named points while it works (``checkpoint``: an orbax save has
started and is not yet finished; ``write``: a run-folder file is written to
its temporary name and not yet renamed; ``part``: a finished method x seed is
about to be recorded; ``results``: ``results.json`` is about to be written).
With the environment variable ``METAREC_KILL_AT=POINT:N`` the process kills
itself with SIGKILL on its N-th arrival at POINT (counted from 1), as a
power cut or ``kill -9`` would. Unset (always, outside the tests and
`bench.kills`), a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "METAREC_KILL_AT"
POINTS = ("checkpoint", "write", "part", "results")
_arrivals: dict[str, int] = {}


def point(name: str) -> None:
  """Marks fault point ``name``; kills this process if ``METAREC_KILL_AT`` asks for this arrival."""
  spec = os.environ.get(ENV)
  if not spec:
    return
  target, _, count = spec.partition(":")
  if target != name:
    return
  _arrivals[name] = _arrivals.get(name, 0) + 1
  if _arrivals[name] == int(count or 1):
    os.kill(os.getpid(), signal.SIGKILL)
