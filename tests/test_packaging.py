"""The repository's front matter agrees with itself: license, citation, version, dependencies."""

from __future__ import annotations

import pathlib
import pytest

import yaml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

import metarec_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_license_file_is_the_apache_license_pyproject_names():
  assert PYPROJECT["license"] == {"text": "Apache-2.0"}
  text = (REPO / "LICENSE").read_text()
  assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text


def test_citation_file_parses_and_matches_the_package():
  cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
  assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
  assert cff["title"].startswith("metarec-jax") and cff["authors"]
  assert str(cff["version"]) == PYPROJECT["version"] == metarec_jax.__version__


def test_plots_and_event_files_need_no_extra():
  names = {d.split(">")[0].split("[")[0].strip().lower() for d in PYPROJECT["dependencies"]}
  assert {"matplotlib", "tensorboardx"} <= names
  assert all("<" not in d and "==" not in d for d in PYPROJECT["dependencies"])  # lower bounds only
