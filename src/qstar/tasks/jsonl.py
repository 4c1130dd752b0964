"""Reading task data from JSONL files (and whole JSON files), with errors that point at the offending ``file:line``.

Benchmark files are edited by hand and fetched from many places; a bad row should stop the run
with one line saying where it is, not with a traceback from deep inside a loader.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from qstar.errors import QstarError, where


def read_jsonl(path: str | Path, required_fields: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """The rows of a ``.jsonl`` or ``.jsonl.gz`` file as ``(line number, object)`` pairs.

    Blank lines are skipped; line numbers are 1-based so they match an editor. Every row must be
    a JSON object holding ``required_fields``.
    """
    path = Path(path)
    rows = [(line, _parse_line(path, line, text)) for line, text in _lines(path)]
    if not rows:
        raise QstarError(f"{where(path)}: no rows (the file is empty)")
    for line, row in rows:
        missing = [name for name in required_fields if name not in row]
        if missing:
            raise QstarError(f"{where(path, line)}: missing field {', '.join(map(repr, missing))}")
    return rows


def read_json(path: str | Path):
    """A whole JSON file (results, trees, configs); malformed JSON is a one-line error at ``file:line``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise QstarError(f"{where(path, err.lineno)}: malformed JSON ({err.msg})") from err


def text_field(path: str | Path, line: int, row: dict, name: str) -> str:
    """``row[name]``, which must be a string: tasks build prompts from it, so a number or null is a data error."""
    value = row.get(name)
    if not isinstance(value, str):
        raise QstarError(f"{where(path, line)}: field {name!r} must be a string, got {type(value).__name__}")
    return value


def jsonl_stem(path: str | Path) -> str:
    """The file name without ``.jsonl`` / ``.jsonl.gz``: ``test.jsonl.gz`` -> ``test`` (used in problem ids)."""
    name = Path(path).name
    for suffix in (".jsonl.gz", ".jsonl", ".gz", ".json"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _lines(path: Path) -> list[tuple[int, str]]:
    """The non-blank lines of the file, decoded, with their numbers."""
    raw = _read_bytes(path)
    out = []
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as err:
            raise QstarError(f"{where(path, number)}: not UTF-8 text ({err.reason})") from None
        if text.strip():
            out.append((number, text))
    return out


def _read_bytes(path: Path) -> bytes:
    """The whole file, gunzipped when its name ends in ``.gz``."""
    if not path.exists():
        raise QstarError(f"{where(path)}: no such file")
    if not path.is_file():
        raise QstarError(f"{where(path)}: not a file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a truncated archive raises EOFError
        raise QstarError(f"{where(path)}: cannot read ({err})") from None


def _parse_line(path: Path, line: int, text: str) -> dict:
    """One row, which must be a JSON object."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise QstarError(f"{where(path, line)}: malformed JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(row, dict):
        raise QstarError(f"{where(path, line)}: expected a JSON object, got {type(row).__name__}")
    return row


def first(items: list, limit: int | None) -> list:
    """The first ``limit`` items (all when None); a negative limit is a usage error, not "all but the last"."""
    if limit is None:
        return list(items)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise QstarError(f"limit must be a non-negative integer or None, got {limit!r}")
    return list(items[:limit])
