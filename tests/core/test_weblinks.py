import pytest

from app.core.weblinks import ForgeLinks, absolute, forge_links, job_path, pipeline_path


def test_the_url_scheme() -> None:
    assert pipeline_path(7) == "/pipelines/7"
    assert job_path(4) == "/runs/4"
    assert job_path(4, "ab.c/d+") == "/runs/4?t=ab.c%2Fd%2B"
    assert absolute("http://127.0.0.1:8080/", "/runs/4") == "http://127.0.0.1:8080/runs/4"


@pytest.mark.parametrize(
    ("forge", "clone", "pr", "want"),
    [
        (
            "github",
            "https://x-access-token:secret@github.com/acme/app.git",
            12,
            ForgeLinks(
                "https://github.com/acme/app",
                "https://github.com/acme/app/commit/abc",
                "https://github.com/acme/app/pull/12",
                "PR #12",
            ),
        ),
        (
            "gitlab",
            "https://gitlab.example.com/ml/models.git",
            3,
            ForgeLinks(
                "https://gitlab.example.com/ml/models",
                "https://gitlab.example.com/ml/models/-/commit/abc",
                "https://gitlab.example.com/ml/models/-/merge_requests/3",
                "MR !3",
            ),
        ),
        (
            "github",
            "https://github.com/acme/app",
            None,
            ForgeLinks("https://github.com/acme/app", "https://github.com/acme/app/commit/abc"),
        ),
        ("local", "/home/me/repo", None, ForgeLinks()),
        ("github", "git@github.com:acme/app.git", 1, ForgeLinks()),
    ],
)
def test_forge_links(forge: str, clone: str, pr: int | None, want: ForgeLinks) -> None:
    assert forge_links(forge, clone, "abc", pr) == want
