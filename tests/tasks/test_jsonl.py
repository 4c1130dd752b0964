"""The JSONL reader: rows with line numbers, and one-line errors that name ``file:line``."""

from __future__ import annotations

import gzip
import json

import pytest

from qstar.errors import QstarError
from qstar.tasks.jsonl import first, jsonl_stem, read_json, read_jsonl, text_field


def test_reads_rows_with_line_numbers_skipping_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert read_jsonl(path, ("a",)) == [(1, {"a": 1}), (4, {"a": 2})]


def test_reads_gzipped_jsonl(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"a": "x"}) + "\n" + json.dumps({"a": "y"}) + "\n")
    assert [row["a"] for _, row in read_jsonl(str(path), ("a",))] == ["x", "y"]


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ('{"a": 1}\n{"a": 2,\n', 2, "malformed JSON"),
        ('{"a": 1}\n[1, 2]\n', 2, "JSON object"),
        ('{"a": 1}\n\n{"b": 1}\n', 3, "missing field 'a'"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(QstarError, match=words) as err:
        read_jsonl(path, ("a",))
    assert f"{path}:{line}:" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(QstarError, match="no such file") as err:
        read_jsonl(path, ())
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(QstarError, match="no rows") as err:
        read_jsonl(path, ())
    assert str(path) in str(err.value)


def test_corrupt_gzip_is_an_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(QstarError, match="cannot read"):
        read_jsonl(path, ())


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(QstarError, match=r"d\.jsonl:2: not UTF-8"):
        read_jsonl(path, ())


def test_text_field_rejects_non_strings(tmp_path):
    assert text_field("f.jsonl", 3, {"q": "hi"}, "q") == "hi"
    with pytest.raises(QstarError, match=r"f\.jsonl:3: field 'q' must be a string, got int"):
        text_field("f.jsonl", 3, {"q": 5}, "q")


def test_stem_drops_jsonl_suffixes():
    assert jsonl_stem("a/b/test.jsonl") == "test"
    assert jsonl_stem("HumanEval.jsonl.gz") == "HumanEval"


def test_first_takes_a_prefix_and_rejects_negative_limits():
    assert first([1, 2, 3], None) == [1, 2, 3]
    assert first([1, 2, 3], 2) == [1, 2]
    assert first([1, 2, 3], 0) == []
    with pytest.raises(QstarError, match="limit"):
        first([1, 2, 3], -1)


def test_read_json_reads_a_whole_file_and_points_at_a_bad_line(tmp_path):
    (tmp_path / "ok.json").write_text('{"a": [1, 2]}')
    assert read_json(tmp_path / "ok.json") == {"a": [1, 2]}
    (tmp_path / "bad.json").write_text('{"a": 1,\n\n "b": }')
    with pytest.raises(QstarError, match=r"bad.json:3: malformed JSON"):
        read_json(tmp_path / "bad.json")
