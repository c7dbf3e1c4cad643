"""The API reference builds from the docstrings (pdoc), with a page per module and the whole public API."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import types

import pytest

import metarec_jax

pytest.importorskip("pdoc")


def test_pdoc_builds_every_module_and_the_public_api(tmp_path):
  out = tmp_path / "api"
  proc = subprocess.run([sys.executable, "-m", "pdoc", "metarec_jax", "-o", str(out)], capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  # Only flax's generated dataclass fields have annotations pdoc cannot resolve; nothing fails to import.
  problems = [line for line in proc.stderr.splitlines()
              if line.startswith("Warn") and "Error parsing type annotation" not in line]
  assert not problems, problems
  modules = [m.name for m in pkgutil.walk_packages(metarec_jax.__path__, "metarec_jax.")
             if not m.name.rsplit(".", 1)[-1].startswith("_")]  # pdoc leaves out private modules (__main__)
  missing = [m for m in modules if not (out / (m.replace(".", "/") + ".html")).is_file()]
  assert not missing, missing
  page = (out / "metarec_jax.html").read_text()
  objects = [n for n in metarec_jax.__all__ if not isinstance(getattr(metarec_jax, n, None), types.ModuleType)
             and f"metarec_jax.{n}" not in modules]
  assert "Recommender" in objects and "run" in objects
  absent = [name for name in objects if f'id="{name}"' not in page]
  assert not absent, absent
  assert "Adapts a meta-learned model to new users" in page  # Recommender's docstring, rendered
