"""KMS envelope encryption and Secrets Manager / SSM references, on moto's server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy import select, update

from app.core.hardware import Catalog
from app.engine.engine import Engine
from app.engine.hooks import EngineHooks
from app.policy.enforce import PolicyBook
from app.policy.setup import Security
from app.secrets.crypto import Cipher, DecryptError, KmsKey, LocalKey
from app.secrets.references import ReferenceError, Resolver, boto_clients, parse
from app.secrets.store import SecretStore
from app.store.db import Database
from app.store.models import Secret
from tests.engine.conftest import Driver

REGION = "eu-west-3"


@pytest.fixture
def aws(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return boto_clients(REGION, moto_server)


def test_kms_envelope_round_trip_and_moved_rows(aws: Any, engine: Engine, make_repo: Any) -> None:
    kms = aws("kms")
    key_id = kms.create_key(Description="ployd test")["KeyMetadata"]["KeyId"]
    store = SecretStore(engine.db, Cipher(LocalKey(b"k" * 32), KmsKey(kms, key_id)))
    repo, _ = make_repo({"README": "x"})
    store.set(str(repo), "A_TOKEN", "kms-sealed-a")
    store.set(str(repo), "B_TOKEN", "kms-sealed-b")
    with engine.db.session() as s:
        a, b = s.scalars(select(Secret).order_by(Secret.name)).all()
        assert a.key_id == f"kms:{key_id}" and a.wrapped_key
        assert b"kms-sealed" not in bytes(a.ciphertext or b"")
        assert store.reveal(a) == "kms-sealed-a"
        assert store.reveal(b) == "kms-sealed-b"
        a_ct, a_wrapped = a.ciphertext, a.wrapped_key
    # a's ciphertext and wrapped key copied onto b: KMS's encryption context refuses
    with engine.db.session() as s:
        s.execute(
            update(Secret)
            .where(Secret.name == "B_TOKEN")
            .values(ciphertext=a_ct, wrapped_key=a_wrapped)
        )
    with engine.db.session() as s, pytest.raises(DecryptError):
        store.reveal(s.scalars(select(Secret).where(Secret.name == "B_TOKEN")).one())
    # without KMS configured, a KMS-sealed value says what is missing
    local_only = SecretStore(engine.db, Cipher(LocalKey(b"k" * 32)))
    with engine.db.session() as s, pytest.raises(DecryptError, match="PLOYD_KMS_KEY_ID"):
        local_only.reveal(s.scalars(select(Secret).where(Secret.name == "A_TOKEN")).one())


def test_reference_syntax() -> None:
    assert parse("aws-sm:prod/wandb#api_key").json_key == "api_key"
    assert parse("aws-sm:arn:aws:secretsmanager:eu-west-3:1:secret:x").name.startswith("arn:")
    assert parse("aws-ssm:/ployd/token").name == "/ployd/token"
    for bad in ("aws-sm:", "aws-sm:x#", "aws-ssm:relative", "vault:x", "aws-ssm:/a#b"):
        with pytest.raises(ReferenceError):
            parse(bad)


@pytest.fixture
def store(aws: Any, engine_db: Database) -> SecretStore:
    """A store that resolves references in moto's Secrets Manager and SSM."""
    return SecretStore(engine_db, Cipher(LocalKey(b"k" * 32)), Resolver(aws))


@pytest.fixture
def engine_hooks(store: SecretStore) -> EngineHooks:
    return Security(store, PolicyBook(Catalog.default())).hooks()


async def test_references_resolve_at_dispatch(
    aws: Any, store: SecretStore, engine: Engine, driver: Driver, make_repo: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    aws("secretsmanager").create_secret(
        Name=f"ployd/{tag}/wandb", SecretString=json.dumps({"api_key": "wandb-from-sm"})
    )
    aws("secretsmanager").create_secret(Name=f"ployd/{tag}/plain", SecretString="plain-from-sm")
    aws("ssm").put_parameter(
        Name=f"/ployd/{tag}/hf", Value="hf-from-ssm", Type="SecureString", Overwrite=True
    )
    config = (
        "version: 1\njobs:\n  t:\n    secrets: [WANDB_API_KEY, PLAIN, HF_TOKEN]\n"
        "    steps: [{run: 'true'}]\n"
    )
    repo, _ = make_repo({".ployd.yml": config})
    store.set(str(repo), "WANDB_API_KEY", f"aws-sm:ployd/{tag}/wandb#api_key", reference=True)
    store.set(str(repo), "PLAIN", f"aws-sm:ployd/{tag}/plain", reference=True)
    store.set(str(repo), "HF_TOKEN", f"aws-ssm:/ployd/{tag}/hf", reference=True)
    with engine.db.session() as s:
        assert all(r.ciphertext is None for r in s.scalars(select(Secret)))
    listed = {i.name: i.reference for i in store.list(str(repo))}
    assert listed["HF_TOKEN"] == f"aws-ssm:/ployd/{tag}/hf"
    from app.handlers.pipelines import start_local

    start_local(engine, Catalog.default(), str(repo))
    (c,) = await driver.claim_all()
    assert c.job["secrets"] == {
        "WANDB_API_KEY": "wandb-from-sm",
        "PLAIN": "plain-from-sm",
        "HF_TOKEN": "hf-from-ssm",
    }
    # A reference that AWS cannot resolve fails the job at dispatch, naming it.
    store.set(str(repo), "PLAIN", f"aws-sm:ployd/{tag}/gone", reference=True)
    pid = start_local(engine, Catalog.default(), str(repo)).pipeline_id
    assert await driver.claim() is None
    job = driver.job(pid or 0, "t")
    assert job.state == "failed"
    assert f"aws-sm:ployd/{tag}/gone could not be read from AWS" in (job.attempts[0].error or "")
    with pytest.raises(ReferenceError, match="no key 'nope'"):
        Resolver(aws).resolve(parse(f"aws-sm:ployd/{tag}/wandb#nope"))
