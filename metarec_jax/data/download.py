"""``metarec data download``: fetch public data sets, verify checksums, unpack flat.

Each data set comes from its public home:

* ``ml-100k``, ``ml-1m``: the GroupLens archives (MD5 as GroupLens publishes
  them; SHA-256 of the unpacked files where we know it);
* ``melu-ml1m``: the files of MeLU's repository (hoyeoplee/MeLU, commit
  ``f70c8ff9``), each with its SHA-256.

Files land directly in the target folder (``DIR/u.data``, ...), which is the
folder to give as ``data.path``. A file that is already there with the right
checksum is not fetched again; a download whose checksum does not match is
deleted and reported. Without network the error is one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile

TIMEOUT_S = 60
_MELU = "https://raw.githubusercontent.com/hoyeoplee/MeLU/f70c8ff91471193cd598bc241c6b0f22665f6375/movielens/ml-1m/"


class DownloadError(RuntimeError):
  """A download failed (no network, bad checksum); the message is one line."""


@dataclasses.dataclass(frozen=True)
class Remote:
  """One URL and what to check and keep of it.

  Attributes:
    url: where the file is.
    md5: expected MD5 of the download ("" = not checked).
    sha256: expected SHA-256 of the download ("" = not checked).
    members: for a zip archive, member path -> expected SHA-256 of the
      unpacked file ("" = not checked); each is saved under its base name.
      Empty: the download itself is saved as ``name``.
    name: file name for a non-archive download.
  """

  url: str
  md5: str = ""
  sha256: str = ""
  members: tuple[tuple[str, str], ...] = ()
  name: str = ""


def _melu(name: str, sha256: str) -> Remote:
  return Remote(_MELU + name, sha256=sha256, name=name)


SOURCES: dict[str, tuple[Remote, ...]] = {
    "ml-100k": (Remote(
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        members=(
            ("ml-100k/u.data", "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"),
            ("ml-100k/u.user", "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c"),
            ("ml-100k/u.item", "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701"),
            ("ml-100k/u.genre", "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb"),
            ("ml-100k/u.occupation", "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d"),
            ("ml-100k/u.info", "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b"),
            ("ml-100k/README", "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52"),
        )),),
    "ml-1m": (Remote(
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        members=(
            ("ml-1m/ratings.dat", ""),
            ("ml-1m/users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
            ("ml-1m/movies.dat", ""),
            ("ml-1m/README", ""),
        )),),
    "melu-ml1m": (
        _melu("users.dat", "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3"),
        _melu("movies.dat", "ad22fd112a753c753925eea3a7a46b7ed82b1273fc4f47f798ee52ec0c28576b"),
        _melu("movies_extrainfos.dat", "18432b1713b66a5262c11f6d929801a6e6f414d861cd2adf191dfba61e45c74d"),
        _melu("m_actor.txt", "7f765f394048db436f3b006eaf6154f46abc2a0af17068d9622e40ab36bb15e4"),
        _melu("m_age.txt", "74f10158e752a773c0317b8bdc4bd0c89dd5c07b79c7a43fdb2577f094dedf46"),
        _melu("m_director.txt", "eb7f008b18607bd6539d2459bf47812020cf5c3a64c49e6431e7f6f541c4930f"),
        _melu("m_gender.txt", "bccd3340ac337dc846f06295a9c94a8d7dc622a44902e9ee53b8790a8978ef66"),
        _melu("m_genre.txt", "588546914e1ed5b60cd0a7dcda9286c38d5efdc7f7d58a08e331de47722224e8"),
        _melu("m_occupation.txt", "258dc75e14c2f2f80e45a9bd489b37a8a5d46056fc1a3536fce3fb9d97d6e2ca"),
        _melu("m_rate.txt", "849e3d478b5e698fbafcbb38f6a0a0b7dbb6638e7173d5e5a6dee113d799c88e"),
        _melu("m_zipcode.txt", "12b2966bc29bfc0736aae58bdf9a1c793114764ae8f3b295577a8fd56e0ea199"),
        _melu("warm_state.json", "036be249428c8fe9e212def927eb3ad60de8ddd054989e75f54e7ab2291da525"),
        _melu("warm_state_y.json", "4ad7829ea3d8a4d58ca8c96a4f368c5c7eab6b8ed85430f2516ab3cd79b5dff2"),
        _melu("user_cold_state.json", "ec7414e1da3b1636d34f0f3a5615e2a07bea9b82156123768049cc166ed20df1"),
        _melu("user_cold_state_y.json", "62b84d073377c183cabfa0b78cb4e745f763b0713920033edf0bbbc43e1dca11"),
        _melu("item_cold_state.json", "1cb691e39e9f64a12922f1c8da2bf8b9c07f885decc4dd4ee5aea0e5bbcc46a1"),
        _melu("item_cold_state_y.json", "b9325e4b056cda7d2834f17c33c4ec34ee6516142c8b51e50103f80d2b0793bf"),
        _melu("user_and_item_cold_state.json",
              "9045ceae16fbc0ca0a160b3ce96bedf97d304d04328755c9fadc9a4ba55450f0"),
        _melu("user_and_item_cold_state_y.json",
              "5bc5057b32224d91fa1f8161f242db72b186afc1c51b571f5aab3c3e93cf0e90"),
    ),
}


def file_digest(path: pathlib.Path, algorithm: str = "sha256") -> str:
  """Hex digest of a file, read in 1 MiB blocks."""
  h = hashlib.new(algorithm)
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _check(path: pathlib.Path, remote_or_label: str, md5: str = "", sha256: str = "") -> None:
  for algorithm, expected in (("md5", md5), ("sha256", sha256)):
    if expected:
      got = file_digest(path, algorithm)
      if got != expected:
        path.unlink(missing_ok=True)
        raise DownloadError(f"{remote_or_label}: {algorithm} checksum mismatch (expected {expected}, got "
                            f"{got}); the file was deleted. Retry, or report a changed upstream file")


def _fetch(url: str, target: pathlib.Path, name: str) -> None:
  """Streams ``url`` into ``target``; network problems become one-line `DownloadError`s."""
  try:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
      shutil.copyfileobj(response, out, 1 << 20)
  except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as e:
    target.unlink(missing_ok=True)
    reason = getattr(e, "reason", e)
    raise DownloadError(f"cannot download {name}: {url} is unreachable ({reason}); no network? Fetch "
                        "the files on a machine with internet and copy them into the target folder") from None


def _has(path: pathlib.Path, sha256: str) -> bool:
  return path.is_file() and bool(sha256) and file_digest(path) == sha256


def download(name: str, to: str | pathlib.Path, *, log=print) -> list[pathlib.Path]:
  """Downloads data set ``name`` into the folder ``to`` and verifies it.

  Args:
    name: one of `SOURCES`.
    to: target folder (created if needed); files land directly in it.
    log: progress messages go here (``None``: silent).

  Returns:
    The paths of the data set's files in ``to``.

  Raises:
    KeyError: unknown name.
    DownloadError: no network, or a checksum mismatch.
  """
  if name not in SOURCES:
    raise KeyError(f"unknown data set {name!r}; downloadable: {sorted(SOURCES)}")
  say = log or (lambda *a: None)
  to = pathlib.Path(to)
  to.mkdir(parents=True, exist_ok=True)
  out = []
  for remote in SOURCES[name]:
    if not remote.members:
      target = to / remote.name
      if _has(target, remote.sha256):
        say(f"{target}: present, checksum ok")
      else:
        say(f"fetching {remote.url}")
        part = to / f".{remote.name}.part"
        _fetch(remote.url, part, name)
        _check(part, remote.url, remote.md5, remote.sha256)
        os.replace(part, target)
      out.append(target)
      continue
    targets = [(member, to / pathlib.PurePosixPath(member).name, sha) for member, sha in remote.members]
    if all(_has(t, sha) or (not sha and t.is_file()) for _, t, sha in targets):
      say(f"{name}: files present in {to}")
      out.extend(t for _, t, _ in targets)
      continue
    say(f"fetching {remote.url}")
    with tempfile.TemporaryDirectory(dir=to, prefix=".download-") as tmp:
      archive = pathlib.Path(tmp) / pathlib.PurePosixPath(remote.url).name
      _fetch(remote.url, archive, name)
      _check(archive, remote.url, remote.md5, remote.sha256)
      try:
        with zipfile.ZipFile(archive) as z:
          for member, target, sha in targets:
            unpacked = pathlib.Path(tmp) / target.name
            with z.open(member) as src, open(unpacked, "wb") as dst:
              shutil.copyfileobj(src, dst, 1 << 20)
            _check(unpacked, f"{remote.url}:{member}", sha256=sha)
            os.replace(unpacked, target)
            out.append(target)
      except (zipfile.BadZipFile, KeyError) as e:
        raise DownloadError(f"{remote.url}: not the expected archive ({e})") from None
  say(f"{name}: {len(out)} files in {to}")
  return out
