"""hashFiles and cache keys: pure, over an in-memory file listing."""

from __future__ import annotations

import hashlib

import pytest

from app.core.cachekey import (
    CacheKeyError,
    evaluate_key,
    hash_files,
    parse_args,
    safe_relpath,
    short_key,
)

FILES = {
    "requirements.txt": b"numpy==2.0\n",
    "requirements-dev.txt": b"pytest\n",
    "src/pkg/__init__.py": b"",
    "src/pkg/lock.json": b"{}",
    "docs/readme.md": b"hi",
}


def h(patterns: list[str], files: dict[str, bytes] = FILES) -> str:
    return hash_files(patterns, list(files), files.__getitem__)


def test_known_digest() -> None:
    inner = hashlib.sha256(b"numpy==2.0\n").digest()
    expected = hashlib.sha256(b"requirements.txt\0" + inner).hexdigest()
    assert h(["requirements.txt"]) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (["requirements*.txt"], ["requirements-dev.txt", "requirements.txt"], True),
        (
            ["requirements.txt", "requirements-dev.txt"],
            ["requirements-dev.txt", "requirements.txt"],
            True,
        ),
        (["**/*.json"], ["src/pkg/lock.json"], True),
        (["./requirements.txt"], ["requirements.txt"], True),
        (["src/**", "!src/pkg/lock.json"], ["src/pkg/__init__.py"], True),
        (["requirements.txt"], ["requirements-dev.txt"], False),
    ],
)
def test_pattern_sets(a: list[str], b: list[str], same: bool) -> None:
    assert (h(a) == h(b)) is same


def test_order_of_the_listing_does_not_matter() -> None:
    reordered = dict(reversed(list(FILES.items())))
    assert h(["**"], reordered) == h(["**"])


def test_no_match_is_empty() -> None:
    assert h(["*.lock"]) == ""
    assert evaluate_key("pip-${{ hashFiles('*.lock') }}", FILES, FILES.__getitem__) == "pip-"


def test_content_and_name_both_count() -> None:
    changed = {**FILES, "requirements.txt": b"numpy==2.1\n"}
    renamed = {k.replace("requirements.txt", "reqs.txt"): v for k, v in FILES.items()}
    assert h(["requirements.txt"], changed) != h(["requirements.txt"])
    assert h(["*.txt"], renamed) != h(["*.txt"])


def test_evaluate_key_several_calls_and_globs() -> None:
    key = "py-${{ hashFiles('requirements*.txt', \"src/**/*.json\") }}-${{hashFiles('docs/*')}}"
    out = evaluate_key(key, FILES, FILES.__getitem__)
    first = h(["requirements*.txt", "src/**/*.json"])
    assert out == f"py-{first}-{h(['docs/*'])}"
    assert evaluate_key("plain-key", FILES, FILES.__getitem__) == "plain-key"


def test_files_are_read_once_per_pattern_set() -> None:
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return FILES[path]

    evaluate_key("${{ hashFiles('*.txt') }}-${{ hashFiles('*.txt') }}", FILES, read)
    assert sorted(reads) == ["requirements-dev.txt", "requirements.txt"]


@pytest.mark.parametrize(
    "key",
    [
        "${{ hashFiles('../etc/passwd') }}",
        "${{ hashFiles('/etc/passwd') }}",
        "${{ hashFiles(requirements.txt) }}",
        "${{ hashFiles() }}",
        "${{ github.sha }}",
        "",
        "x" * 600,
        "a\nb",
    ],
)
def test_bad_keys(key: str) -> None:
    with pytest.raises(CacheKeyError):
        evaluate_key(key, FILES, FILES.__getitem__)


def test_parse_args() -> None:
    assert parse_args("'a', \"b\" ,'c/**'") == ("a", "b", "c/**")


@pytest.mark.parametrize(
    ("path", "ok"),
    [
        ("out/report.txt", "out/report.txt"),
        ("./out//a.txt", "out/a.txt"),
        ("out/../a.txt", "a.txt"),
        ("../a.txt", None),
        ("out/../../a", None),
        ("/etc/passwd", None),
        ("a\\..\\b", None),
        ("", None),
        (".", None),
    ],
)
def test_safe_relpath(path: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(CacheKeyError):
            safe_relpath(path)
    else:
        assert safe_relpath(path) == ok


def test_short_key() -> None:
    assert short_key("pip-" + "a" * 64) == "pip-" + "a" * 36 + "…"
    assert short_key("short") == "short"
