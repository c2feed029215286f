import pytest

from app.core.links import BadToken, sign_job, verify_job

KEY = b"k" * 32


def test_round_trip() -> None:
    token = sign_job(KEY, 12, 3, ttl_s=60, now=1000)
    verify_job(KEY, token, 12, 3, now=1059)


@pytest.mark.parametrize(
    ("job", "tenant", "key", "now", "message"),
    [
        (13, 3, KEY, 1000, "not valid"),  # another job
        (12, 4, KEY, 1000, "not valid"),  # another tenant's job with the same id
        (12, 3, b"x" * 32, 1000, "not valid"),  # another server's key
        (12, 3, KEY, 1061, "expired"),
    ],
)
def test_refused(job: int, tenant: int, key: bytes, now: int, message: str) -> None:
    token = sign_job(KEY, 12, 3, ttl_s=60, now=1000)
    with pytest.raises(BadToken, match=message):
        verify_job(key, token, job, tenant, now=now)


@pytest.mark.parametrize("token", ["", "zz", "abc.def", "10.!!!", ".", "1.2.3"])
def test_malformed(token: str) -> None:
    with pytest.raises(BadToken):
        verify_job(KEY, token, 1, 1, now=0)
