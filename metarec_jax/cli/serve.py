"""``metarec export | serve`` (being written)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
  """Registers ``metarec export`` and ``metarec serve`` (not yet)."""
