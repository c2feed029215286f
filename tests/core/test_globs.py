import pytest

from app.core.globs import all_files_ignored, glob_match, matches_any


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("main", "main", True),
        ("main", "mainline", False),
        ("release/*", "release/1.0", True),
        ("release/*", "release/1.0/hotfix", False),
        ("release/**", "release/1.0/hotfix", True),
        ("*.md", "README.md", True),
        ("*.md", "docs/guide.md", False),
        ("**/*.md", "docs/guide.md", True),
        ("**/*.md", "README.md", True),
        ("docs/**", "docs/a/b.txt", True),
        ("docs/**", "src/docs/a.txt", False),
        ("model/**", "model/layers.py", True),
        ("v[0-9]*", "v1.2", True),
        ("v[0-9]*", "vx", False),
        ("file?.py", "file1.py", True),
        ("file?.py", "file/.py", False),
        ("a.b", "axb", False),
    ],
)
def test_glob_match(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_negation_last_match_wins() -> None:
    pats = ["release/**", "!release/**-beta"]
    assert matches_any(pats, "release/1.0")
    assert not matches_any(pats, "release/1.0-beta")
    assert not matches_any(pats, "main")


def test_all_files_ignored() -> None:
    assert all_files_ignored(["docs/**", "*.md"], ["README.md", "docs/x.md"])
    assert not all_files_ignored(["docs/**", "*.md"], ["README.md", "src/app.py"])
    assert not all_files_ignored(["docs/**"], [])
