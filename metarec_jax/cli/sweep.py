"""``metarec sweep`` (being written)."""

from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
  """Registers ``metarec sweep`` (not yet)."""
