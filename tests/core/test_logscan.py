import pytest

from app.core.logscan import first_error_line


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["ok", "all good"], None),
        (["collecting", "FAILED tests/test_a.py::test_x", "E assert 1 == 2"], 1),
        (["a", "Traceback (most recent call last):", "  File x"], 1),
        (["\x1b[31merror\x1b[0m: cannot find crate"], 0),
        (["no errors here", "terrorism is not an error word?"], 1),
        (["fatal: not a git repository"], 0),
        (["interrupted by user"], None),
    ],
)
def test_first_error_line(lines: list[str], expected: int | None) -> None:
    assert first_error_line(lines) == expected
