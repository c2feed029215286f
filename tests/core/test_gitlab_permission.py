import pytest

from app.core.slash import Permission, gitlab_permission


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (0, Permission.NONE),
        (5, Permission.NONE),
        (10, Permission.READ),
        (15, Permission.READ),
        (20, Permission.TRIAGE),
        (30, Permission.WRITE),
        (40, Permission.MAINTAIN),
        (50, Permission.ADMIN),
        (60, Permission.ADMIN),
    ],
)
def test_gitlab_roles(level: int, expected: Permission) -> None:
    assert gitlab_permission(level) is expected
