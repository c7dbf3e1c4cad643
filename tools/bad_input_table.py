"""Prints the bad-input table (markdown) of `tests/faults/test_bad_input.py` with the message each case gets.

Usage (from the repository root)::

    python tools/bad_input_table.py > table.md

Every case of ``CASES`` is written into a temporary folder and run through
`metarec_jax.cli.main`; the table has one row per case: the input, the
example and the exact one-line message (temporary paths shown as ``DIR``).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import sys
import tempfile
import warnings

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from metarec_jax.cli import main  # noqa: E402
from metarec_jax.data.parsing import DataWarning  # noqa: E402
from tests.faults.test_bad_input import CASES, argv_of  # noqa: E402


def message(case) -> tuple[int, str]:
  """``(exit status, stderr)`` of one case, run in a fresh temporary folder."""
  with tempfile.TemporaryDirectory() as tmp:
    folder = pathlib.Path(tmp) / "in"
    folder.mkdir()
    path = case.make(folder)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
      warnings.simplefilter("ignore", DataWarning)
      try:
        rc = main(argv_of(case, path, pathlib.Path(tmp) / "scratch"))
      except BaseException as e:  # noqa: BLE001  (a case that fails is shown as such)
        rc, text = -1, f"{type(e).__name__}: {e}"
        err.write(text)
    text = err.getvalue().strip()
    for base in (folder.resolve(), folder):
      text = text.replace(str(base), "DIR")
  return rc, text


def cell(text: str) -> str:
  return text.replace("|", "\\|").replace("\n", "<br>")


def code(text: str) -> str:
  """``text`` as inline code (plain when it holds a backtick itself)."""
  return f"`{cell(text)}`" if "`" not in text else cell(text)


def main_() -> int:
  print("| input | example | message |")
  print("|---|---|---|")
  bad = 0
  for case in CASES:
    rc, text = message(case)
    text = text.removeprefix("metarec: error: ")
    if rc == 2 and "\n" not in text:
      shown = code(text)
    else:
      bad += 1
      if rc == 0:
        shown = "**accepted** (exit status 0: not validated yet)"
      else:
        what = "a traceback" if rc != 2 else f"{len(text.splitlines())} lines"
        shown = f"**not yet one line** ({what}): " + "<br>".join(code(line.strip()) for line in text.splitlines())
    print(f"| {case.input} | {cell(case.example)} | {shown} |")
  if bad:
    print(f"\n{bad} case(s) are not yet one line with exit status 2", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main_())
