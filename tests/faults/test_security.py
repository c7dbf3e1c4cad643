"""Security: what the package may execute and deserialise, checked on its source (`ast`, no imports).

* no pickle-family module (pickle, cloudpickle, dill, marshal, shelve, joblib) is imported;
* no call of the builtins ``eval`` / ``exec`` / ``compile`` / ``__import__``;
* no ``os.system`` / ``os.popen`` / ``os.exec*`` / ``os.spawn*``, no ``shell=True``;
* ``subprocess`` only where listed in `SUBPROCESS_ALLOWED` (benchmarks that start Python itself);
* every ``np.load`` passes ``allow_pickle=False``; no ``torch.load`` (it unpickles);
* user code runs only through `metarec_jax.pyfile` (``spec_from_file_location`` / ``exec_module``), and
  ``importlib.import_module`` only where listed in `IMPORT_MODULE_ALLOWED`.

Each exception is listed here with its reason; a new one fails until it is listed.
"""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "metarec_jax"

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "marshal", "shelve", "joblib"}
BUILTIN_EXEC = {"eval", "exec", "compile", "__import__"}
OS_SHELL = {"system", "popen", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
            "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn",
            "posix_spawnp"}

# File (relative to the package) -> why it may use subprocess. All run `sys.executable` with an argument list
# (never a shell): each benchmark point in a fresh Python process, so that memory and compile caches do not leak
# between points, or a process killed on purpose.
SUBPROCESS_ALLOWED = {
    "bench/growth.py": "runs each growth point in a fresh `python -m metarec_jax.bench.growth` process",
    "bench/kills.py": "starts `metarec run` as a child process and kills it (the kill -9 fault benchmark)",
    "runlog.py": "env.json's dirty flag: `git status --porcelain` with a fixed argument list (the commit itself "
                 "is read from .git without running anything)",
}
# Only files under these folders (or named here) may appear in SUBPROCESS_ALLOWED.
SUBPROCESS_FOLDERS = ("bench/", "runlog.py")

# File -> why it may call importlib.import_module (by a module *name*, never a file path).
IMPORT_MODULE_ALLOWED = {
    "pyfile.py": "reimports the installed modules that define a reopened run's methods, as its run.json names them",
    "models/text.py": "imports optional dependencies by fixed names (safetensors.numpy, tokenizers)",
    "runlog.py": "imports the optional wandb package by its fixed name, only when train.wandb_project is set",
}
# The one file that executes user files (experiment files, student files, a run's method files).
USER_CODE_LOADER = "pyfile.py"


def _files() -> list[pathlib.Path]:
  files = sorted(PACKAGE.rglob("*.py"))
  assert len(files) > 20, f"no package sources under {PACKAGE}"
  return files


def _rel(path: pathlib.Path) -> str:
  return path.relative_to(PACKAGE).as_posix()


def _dotted(node: ast.AST) -> str:
  """``a.b.c`` for a Name / Attribute chain, else ``""``."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name):
    parts.append(node.id)
    return ".".join(reversed(parts))
  return ""


def _aliases(tree: ast.Module) -> dict[str, str]:
  """Local name -> imported module or object (``np`` -> ``numpy``, ``load`` -> ``numpy.load``)."""
  out = {}
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      for a in node.names:
        out[a.asname or a.name] = f"{node.module}.{a.name}"
  return out


def _calls(tree: ast.Module):
  """``(call node, fully qualified callee)`` for every call, with import aliases resolved."""
  aliases = _aliases(tree)
  for node in ast.walk(tree):
    if isinstance(node, ast.Call):
      name = _dotted(node.func)
      if name:
        head, _, rest = name.partition(".")
        if head in aliases:
          name = aliases[head] + ("." + rest if rest else "")
        yield node, name


def _violations() -> dict[str, list[str]]:
  found: dict[str, list[str]] = {}

  def add(kind, path, node, what):
    found.setdefault(kind, []).append(f"{_rel(path)}:{node.lineno}: {what}")

  for path in _files():
    rel = _rel(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for node in ast.walk(tree):
      modules = []
      if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
        modules = [node.module]
      for m in modules:
        if m.split(".")[0] in PICKLE_MODULES:
          add("pickle", path, node, f"import {m}")
        if m.split(".")[0] == "subprocess" and rel not in SUBPROCESS_ALLOWED:
          add("subprocess", path, node, f"import {m}")
    for node, name in _calls(tree):
      if name in BUILTIN_EXEC and not (isinstance(node.func, ast.Name) and node.func.id in defined):
        add("exec", path, node, f"{name}(...)")
      if name.startswith("os.") and name[3:] in OS_SHELL:
        add("shell", path, node, f"{name}(...)")
      for kw in node.keywords:
        if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
          add("shell", path, node, f"{name}(..., shell=...)")
      if name.startswith("subprocess.") and rel not in SUBPROCESS_ALLOWED:
        add("subprocess", path, node, f"{name}(...)")
      if name in ("numpy.load", "jax.numpy.load"):
        ok = any(kw.arg == "allow_pickle" and isinstance(kw.value, ast.Constant) and kw.value.value is False
                 for kw in node.keywords)
        if not ok:
          add("np.load", path, node, f"{name}(...) without allow_pickle=False")
      if name in ("torch.load", "pandas.read_pickle", "numpy.lib.format.read_array"):
        add("pickle", path, node, f"{name}(...)")
      if name.endswith("spec_from_file_location") or name.endswith("exec_module") or name.endswith(
          "SourceFileLoader") or name == "runpy.run_path" or name == "runpy.run_module":
        if rel != USER_CODE_LOADER:
          add("user code", path, node, f"{name}(...)")
      if name == "importlib.import_module" and rel not in IMPORT_MODULE_ALLOWED:
        add("import_module", path, node, f"{name}(...)")
  return found


VIOLATIONS = _violations()
KINDS = {
    "pickle": "no pickle-family module or unpickling call",
    "exec": "no eval / exec / compile / __import__ builtins",
    "shell": "no shell: os.system / os.popen / os.exec* / os.spawn*, shell=True",
    "subprocess": f"subprocess only in {sorted(SUBPROCESS_ALLOWED)}",
    "np.load": "np.load with allow_pickle=False",
    "user code": f"user files executed only by {USER_CODE_LOADER}",
    "import_module": f"importlib.import_module only in {sorted(IMPORT_MODULE_ALLOWED)}",
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_source_rule(kind):
  assert not VIOLATIONS.get(kind), f"{KINDS[kind]}:\n  " + "\n  ".join(VIOLATIONS[kind])


def test_allowed_exceptions_are_real_and_in_place():
  """Every listed exception exists and is where it may be (a stale entry would hide nothing, but mislead)."""
  for rel in SUBPROCESS_ALLOWED:
    assert rel.startswith(SUBPROCESS_FOLDERS), f"{rel}: subprocess is allowed only under {SUBPROCESS_FOLDERS}"
  for rel in {**SUBPROCESS_ALLOWED, **IMPORT_MODULE_ALLOWED, USER_CODE_LOADER: ""}:
    assert (PACKAGE / rel).is_file(), f"{rel} is listed as an exception but does not exist"
  loader = (PACKAGE / USER_CODE_LOADER).read_text()
  assert "spec_from_file_location" in loader and "exec_module" in loader


def test_the_checker_catches_what_it_forbids(tmp_path, monkeypatch):
  """The rules fire on a file that breaks each of them (so a silent checker cannot pass)."""
  bad = tmp_path / "metarec_jax"
  bad.mkdir()
  (bad / "bad.py").write_text(
      "import pickle\nimport subprocess\nimport os\nimport numpy as np\nimport importlib, importlib.util\n"
      "from numpy import load\n"
      "eval('1')\nexec('x = 1')\ncompile('1', 'f', 'eval')\nos.system('ls')\n"
      "subprocess.run('ls', shell=True)\nnp.load('a.npy')\nload('b.npy', allow_pickle=True)\n"
      "importlib.util.spec_from_file_location('m', 'm.py')\nimportlib.import_module('m')\n")
  for i in range(21):  # _files wants a package-sized tree
    (bad / f"ok{i}.py").write_text("import re\nre.compile('x')\n")
  monkeypatch.setattr(sys.modules[__name__], "PACKAGE", bad)
  found = _violations()
  assert set(found) == set(KINDS), found
  assert len(found["np.load"]) == 2 and len(found["exec"]) == 3
