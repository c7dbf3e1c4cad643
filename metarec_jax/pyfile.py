"""Importing a user's Python file (experiment files, student configs, the files a run's methods come from).

One importer for all of them: a file is imported once per content under a
module name derived from its resolved path, so importing it again (the same
experiment file run twice, a run folder reopened) returns the same module and
its registrations (`methods.register_method`, `models.register_head`, ...) are
not made twice; an edited file is imported afresh under the same name, and
its registrations replace their earlier versions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import sys
from types import ModuleType

from metarec_jax.suggest import did_you_mean

PREFIX = "metarec_file_"
_LOADED: dict[str, str] = {}  # module name -> digest of the source it was imported from


class PyFileError(ImportError):
  """A user file does not exist or failed to import (the message names the file and the cause)."""


def module_name(path: str | pathlib.Path) -> str:
  """The module name a file is imported under."""
  p = pathlib.Path(path).resolve()
  stem = "".join(ch if ch.isalnum() else "_" for ch in p.stem)
  return f"{PREFIX}{stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:10]}"


def load_file(path: str | pathlib.Path, what: str = "file") -> ModuleType:
  """Imports the Python file at ``path`` (once per content) and returns the module.

  Args:
    path: the file.
    what: how messages name it (``experiment file``, ``student file``, ...).

  Raises:
    PyFileError: the file does not exist or raised while importing.
  """
  p = pathlib.Path(path)
  if not p.is_file():
    nearby = [str(f) for f in p.parent.glob("*.py")] if p.parent.is_dir() else []
    problem = "is a folder, not a file" if p.is_dir() else "does not exist"
    raise PyFileError(f"{what} {p} {problem}{did_you_mean(str(p), nearby)}")
  name = module_name(p)
  source = p.read_bytes()
  digest = hashlib.sha1(source).hexdigest()
  if name in sys.modules and _LOADED.get(name) == digest:
    return sys.modules[name]
  spec = importlib.util.spec_from_file_location(name, p.resolve())
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  try:
    spec.loader.exec_module(module)
  except Exception as e:
    del sys.modules[name]
    _LOADED.pop(name, None)
    raise PyFileError(f"{what} {p} failed to import: {type(e).__name__}: {e}") from e
  _LOADED[name] = digest
  return module


def origin(obj: object) -> dict[str, str] | None:
  """Where ``obj`` (a class or function) was defined, when outside this package: ``{"module", "file"}``.

  None for the package's own objects and for objects without a source file.
  """
  mod = getattr(obj, "__module__", None)
  if not mod or mod == "metarec_jax" or mod.startswith("metarec_jax."):
    return None
  module = sys.modules.get(mod)
  file = getattr(module, "__file__", None)
  if not file:
    return None
  return {"module": mod, "file": str(pathlib.Path(file).resolve())}


def import_origin(entry: dict[str, str]) -> None:
  """Imports what `origin` recorded: the file for files this module imported, else the module by name.

  Raises:
    PyFileError: the file or module cannot be imported.
  """
  mod = entry["module"]
  if mod in sys.modules:
    return
  if mod.startswith(PREFIX):
    load_file(entry["file"], "the file that defines this run's methods,")
    return
  try:
    importlib.import_module(mod)
  except Exception as e:
    raise PyFileError(f"module {mod} (from {entry.get('file')}) failed to import: {type(e).__name__}: {e}") from e
