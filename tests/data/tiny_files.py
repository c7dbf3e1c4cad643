"""Writers of tiny data folders in each supported layout (the tests' own files)."""

from __future__ import annotations

import json
import pathlib

ML100K_GENRES = ("unknown", "Action", "Comedy", "Drama")


def write_ml100k(d: pathlib.Path, ratings: list[tuple] | None = None) -> pathlib.Path:
  """4 users, 5 items; ``ratings`` are (user, item, rating, timestamp) rows."""
  d.mkdir(parents=True, exist_ok=True)
  (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(ML100K_GENRES)) + "\n")
  (d / "u.occupation").write_text("engineer\nartist\nother\n")
  (d / "u.user").write_text("1|24|M|engineer|85711\n2|53|F|other|94043\n3|17|M|artist|T8H1N\n"
                            "4|60|F|engineer|02139-4307\n")
  items = [
      "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|0",
      "2|GoldenEye (1995)|01-Jan-1995||http://x|0|1|0|0",
      "3|Misérables, Les (1995)|01-Jan-1995||http://x|0|0|0|1",
      "4|Titanic (1997)|01-Jan-1997||http://x|0|1|0|1",
      "5|unknown|||http://x|1|0|0|0",
  ]
  (d / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
  if ratings is None:
    ratings = [(u, i, 1 + (u + i) % 5, 1000 * u + i) for u in range(1, 5) for i in range(1, 6)]
  (d / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
  return d


def write_ml1m(d: pathlib.Path, ratings: list[tuple] | None = None) -> pathlib.Path:
  """3 users, 4 movies in the ML-1M layout."""
  d.mkdir(parents=True, exist_ok=True)
  (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117-1234\n")
  (d / "movies.dat").write_bytes(("1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                  "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
                                  "3::Café au lait (1993)::Comedy\n"
                                  "4::Matrix, The (1999)::Action|Sci-Fi\n").encode("latin-1"))
  if ratings is None:
    ratings = [(u, i, 1 + (u * i) % 5, 978300000 + 10 * u + i) for u in range(1, 4) for i in range(1, 5)]
  (d / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in ratings))
  return d


MELU_VOCAB = {
    "gender": ["M", "F"],
    "age": ["1", "18", "25", "35", "45", "50", "56"],
    "occupation": [str(i) for i in range(21)],
    "zipcode": ["48067", "70072", "55117", "02460"],
    "rate": ["PG-13", "UNRATED", "R", "G"],
    "genre": ["Animation", "Comedy", "Drama", "Action"],
    "director": ["nan", "John Lasseter", "Andrew Stanton", "Joe Johnston"],
    "actor": ["Tom Hanks", "nan", "Tim Allen", "Robin Williams"],
}


def melu_movie(mid, title, year, rate, genre, director, writer, actors):
  return "::".join([str(mid), title, str(year), rate, "01 Jan 1995", genre, director, writer, actors,
                    "A plot.", "http://poster"])


def write_melu(d: pathlib.Path, states: dict | None = None) -> pathlib.Path:
  """4 users, 4 movies and four tiny state files in MeLU's layout.

  ``states``: state stem -> ({user: [movie, ...]}, {user: [rating, ...]}).
  """
  d.mkdir(parents=True, exist_ok=True)
  (d / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117-1234\n"
                               "4::F::35::0::02460\n")
  movies = [
      melu_movie(1, "Toy Story", 1995, "G", "Animation, Comedy", "John Lasseter",
                 "John Lasseter (story), Pete Docter (story)", "Tom Hanks, Tim Allen"),
      melu_movie(2, "Jumanji", 1995, "PG-13", "Action", "Joe Johnston", "Jonathan Hensleigh", "Robin Williams"),
      melu_movie(3, "Finding Nemo", 1998, "UNRATED", "Animation",
                 "Andrew Stanton, Lee Unkrich(co-director)", "N/A", "N/A"),
      melu_movie(4, "Mystery", 1999, "N/A", "N/A", "N/A", "Someone", "Tom Hanks"),
  ]
  (d / "movies_extrainfos.dat").write_text("\n".join(movies) + "\n", encoding="utf-8")
  for name, entries in MELU_VOCAB.items():
    (d / f"m_{name}.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
  if states is None:
    states = {
        "warm_state": ({"1": ["1", "2"], "2": ["2", "1"]}, {"1": [5, 3], "2": [4, 2]}),
        "user_cold_state": ({"3": ["1"], "4": ["2", "1"]}, {"3": [1], "4": [2, 3]}),
        "item_cold_state": ({"1": ["3"], "2": ["4", "3"]}, {"1": [4], "2": [5, 1]}),
        "user_and_item_cold_state": ({"3": ["4"]}, {"3": [3]}),
    }
  for stem, (x, y) in states.items():
    (d / f"{stem}.json").write_text(json.dumps(x))
    (d / f"{stem}_y.json").write_text(json.dumps(y))
  return d


def write_recbole(d: pathlib.Path, name: str = "tiny", inter: str | None = None,
                  user: str | None = None, item: str | None = None) -> pathlib.Path:
  """A tiny RecBole atomic data set; pass text to replace a file ("" = no file)."""
  d.mkdir(parents=True, exist_ok=True)
  if inter is None:
    rows = [(u, i, 1 + (u + 2 * i) % 5, 100 * u + i) for u in range(1, 5) for i in range(1, 5)]
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "".join(
        f"u{u}\tm{i}\t{r}\t{t}\n" for u, i, r, t in rows)
  if user is None:
    user = ("user_id:token\tage:token\tgender:token\theight:float\n"
            "u1\t24\tM\t1.8\nu2\t53\tF\t\nu3\t24\tF\t1.6\nu4\t30\tM\t1.7\n")
  if item is None:
    item = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tvec:float_seq\n"
            "m1\tToy Story\t1995\tAnimation Comedy\t1 2\n"
            "m2\tHeat\t1995\tAction\t3\n"
            "m3\tThe Thing\t1998\tHorror Action\t\n"
            "m4\tBig\t1999\t\t0 1 2\n")
  for suffix, text in (("inter", inter), ("user", user), ("item", item)):
    if text:
      (d / f"{name}.{suffix}").write_text(text, encoding="utf-8")
  return d


def listing(d: pathlib.Path) -> dict[str, tuple[int, int]]:
  """Every file under ``d`` with its size and mtime (to prove nothing was written)."""
  return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(d.rglob("*"))}
