"""Secrets by repository: set, list, delete; delivered to the jobs that declare them.

A secret belongs to a tenant and one of its repositories, optionally only for branches
matching a pattern (``main``, ``release/*``: the core's glob rules). For a job, each
declared name resolves to the most specific secret whose pattern matches the pipeline's
branch, else the one without a pattern. Pipelines not on a branch (pull requests, tags)
get only secrets without a pattern: a deploy key scoped to ``main`` never reaches a pull
request's code. Values are never logged; the audit trail records names only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.audit.chain import append
from app.core.globs import glob_match
from app.core.jobspec import StoredJobSpec
from app.secrets.crypto import Cipher, Sealed, identity
from app.secrets.references import Resolver, is_reference, parse
from app.store import secrets as secret_rows
from app.store.db import Database, Tx, session_of
from app.store.models import Attempt, AuditRecord, Job, Pipeline, Repository, Secret, utcnow

Names = list[str]
Rows = list[Secret]  # (inside SecretStore, ``list`` is its method)
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}\Z")
FORGES = ("github", "gitlab", "local")


class SecretError(ValueError):
    """A request about secrets that cannot be done (bad name, unknown repository...)."""


class SecretNotFound(SecretError):
    pass


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown about a secret: never its value."""

    forge: str
    repo: str
    name: str
    branch: str
    kind: str  # value | reference
    reference: str | None
    updated_at: datetime
    updated_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "forge": self.forge,
            "repo": self.repo,
            "name": self.name,
            "branch": self.branch or None,
            "kind": self.kind,
            "reference": self.reference,
            "updated_at": self.updated_at.isoformat(),
            "updated_by": self.updated_by,
        }


def branch_of(ref: str) -> str | None:
    """The branch a pipeline runs on; None for pull requests, tags and bare commits."""
    return ref[len("refs/heads/") :] if ref.startswith("refs/heads/") else None


def pick(rows: Iterable[Secret], branch: str | None) -> Secret | None:
    """The secret for ``branch`` among one name's rows: a matching pattern (exact first,
    then the longest), else the unscoped one."""
    scoped = [r for r in rows if r.branch]
    if branch is not None:
        hits = [r for r in scoped if glob_match(r.branch, branch)]
        if hits:
            return max(hits, key=lambda r: (r.branch == branch, len(r.branch), r.branch))
    return next((r for r in rows if not r.branch), None)


def set_command(full_name: str, name: str) -> str:
    return f"ployd secrets set --repo {full_name} {name}"


def _info(row: Secret) -> SecretInfo:
    return SecretInfo(
        forge=row.repository.forge,
        repo=row.repository.full_name,
        name=row.name,
        branch=row.branch,
        kind=row.kind,
        reference=row.reference,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def _aad(row: Secret) -> bytes:
    return identity(row.tenant_id, row.repository_id, row.name, row.branch)


class SecretStore:
    def __init__(self, db: Database, cipher: Cipher, resolver: Resolver | None = None) -> None:
        self.db = db
        self.cipher = cipher
        self.resolver = resolver

    # ---- people ---------------------------------------------------------------------

    def repository(self, s: Tx, repo: str, forge: str | None = None) -> Repository:
        """The repository called ``repo`` (``owner/name``; a path for ``local``). Without
        ``forge``, the only known repository of that name. A local repository PloyD has
        not run yet is registered; a forge's must have been seen (installed, or an event)."""
        if forge is not None and forge not in FORGES:
            raise SecretError(f"unknown forge {forge!r}; known: {', '.join(FORGES)}")
        local_path = forge == "local" or (forge is None and repo.startswith(("/", ".", "~")))
        if local_path:
            repo = str(Path(repo).expanduser().resolve())
            forge = "local"
        found = secret_rows.repositories_named(s, repo, forge)
        if len(found) > 1:
            forges = ", ".join(sorted(r.forge for r in found))
            raise SecretError(f"{repo} is known on several forges ({forges}): say --forge")
        if found:
            return found[0]
        if forge == "local":
            return secret_rows.add_local_repository(s, repo, Path(repo).as_uri())
        where = f" on {forge}" if forge else ""
        raise SecretError(
            f"PloyD does not know the repository {repo}{where} yet: install the app on it "
            "(or push once) so that PloyD knows its tenant, then set its secrets"
        )

    def set(
        self,
        repo: str,
        name: str,
        value: str,
        *,
        forge: str | None = None,
        branch: str = "",
        actor: str = "cli",
        reference: bool = False,
    ) -> SecretInfo:
        """Store a value (encrypted) or, with ``reference``, an ``aws-sm:``/``aws-ssm:``
        reference; replaces the secret of the same name and branch pattern."""
        if not NAME.match(name):
            raise SecretError(
                f"{name!r} is not a secret name: letters, digits and _, not starting with a digit"
            )
        branch = branch.strip()
        if branch and (any(c.isspace() for c in branch) or branch.startswith("!")):
            raise SecretError(f"{branch!r} is not a branch pattern (e.g. main, release/*)")
        if not value:
            raise SecretError("the value is empty")
        if reference:
            value = str(parse(value))
        with self.db.session() as s:
            repository = self.repository(s, repo, forge)
            row = secret_rows.find(s, repository.id, name, branch)
            created = row is None
            if row is None:
                row = Secret(
                    tenant_id=repository.tenant_id,
                    repository_id=repository.id,
                    repository=repository,
                    name=name,
                    branch=branch,
                )
            row.updated_at = utcnow()
            row.updated_by = actor
            if reference:
                row.kind, row.reference = "reference", value
                row.ciphertext, row.wrapped_key, row.key_id = None, None, ""
            else:
                sealed = self.cipher.seal(value, _aad(row))
                row.kind, row.reference = "value", None
                row.ciphertext, row.key_id = sealed.ciphertext, sealed.key_id
                row.wrapped_key = sealed.wrapped_key
            secret_rows.save(s, row)
            append(
                s,
                AuditRecord(
                    actor=actor,
                    forge=repository.forge,
                    action="secret.set",
                    target=f"repo:{repository.full_name}",
                    details={
                        "name": name,
                        "branch": branch or None,
                        "kind": row.kind,
                        "reference": row.reference,
                        "created": created,
                    },
                ),
            )
            return _info(row)

    def list(self, repo: str, *, forge: str | None = None) -> list[SecretInfo]:
        with self.db.session() as s:
            repository = self.repository(s, repo, forge)
            return [_info(r) for r in secret_rows.of_repository(s, repository.id)]

    def delete(
        self,
        repo: str,
        name: str,
        *,
        forge: str | None = None,
        branch: str = "",
        actor: str = "cli",
    ) -> None:
        with self.db.session() as s:
            repository = self.repository(s, repo, forge)
            row = secret_rows.find(s, repository.id, name, branch.strip())
            if row is None:
                scope = f" for branches {branch}" if branch else ""
                raise SecretNotFound(f"{repository.full_name} has no secret {name}{scope}")
            secret_rows.remove(s, row)
            append(
                s,
                AuditRecord(
                    actor=actor,
                    forge=repository.forge,
                    action="secret.delete",
                    target=f"repo:{repository.full_name}",
                    details={"name": name, "branch": branch or None},
                ),
            )

    # ---- jobs -----------------------------------------------------------------------

    @staticmethod
    def _rows(s: Tx, pipeline: Pipeline, names: Names) -> dict[str, Rows]:
        return secret_rows.by_name(s, pipeline.repository_id, names)

    def missing(self, s: Tx, pipeline: Pipeline, job: Job) -> Names:
        """The names ``job`` declares that no secret of its repository and branch covers."""
        names = list(StoredJobSpec.from_stored(job.spec).secret_names)
        branch = branch_of(pipeline.ref)
        return [
            n for n, rows in self._rows(s, pipeline, names).items() if pick(rows, branch) is None
        ]

    def gate(self, s: Tx, attempt: Attempt) -> str | None:
        """The engine's gate: a job declaring a secret that does not exist fails before
        it starts, saying which and how to set it (a fork's job gets none: not checked)."""
        job = attempt.job
        pipeline = job.pipeline
        if pipeline.fork:
            return None
        missing = self.missing(s, pipeline, job)
        if not missing:
            return None
        repo = pipeline.repository.full_name
        branch = branch_of(pipeline.ref)
        where = (
            f"branch {branch}"
            if branch is not None
            else f"{pipeline.ref}, which only gets secrets without a branch pattern"
        )
        parts = [f"`{set_command(repo, n)}`" for n in missing]
        noun = "secret" if len(missing) == 1 else "secrets"
        return (
            f"{noun} {', '.join(missing)} not set for {repo} ({where}): "
            f"set {'it' if len(missing) == 1 else 'them'} with {' and '.join(parts)}"
        )

    def provide(self, pipeline: Pipeline, job: Job) -> dict[str, str]:
        """The engine's secrets provider: the declared secrets' values, for one claim."""
        names = list(StoredJobSpec.from_stored(job.spec).secret_names)
        if not names:
            return {}
        s = session_of(job)
        if s is None:
            raise RuntimeError("the job is not attached to a session")
        branch = branch_of(pipeline.ref)
        out: dict[str, str] = {}
        for name, rows in self._rows(s, pipeline, names).items():
            row = pick(rows, branch)
            if row is None:
                raise SecretNotFound(
                    f"secret {name} is not set for {pipeline.repository.full_name}: "
                    f"`{set_command(pipeline.repository.full_name, name)}`"
                )
            out[name] = self.reveal(row)
        return out

    def value_of(self, repository_id: int, ref: str, name: str) -> str | None:
        """One secret's value for a repository's ref (a notification channel's), or
        None when it is not set (blocking: it may ask AWS)."""
        with self.db.session() as s:
            rows = secret_rows.by_name(s, repository_id, [name]).get(name, [])
            row = pick(rows, branch_of(ref))
            return self.reveal(row) if row is not None else None

    def reveal(self, row: Secret) -> str:
        if row.kind == "reference":
            if self.resolver is None:
                raise SecretError(f"{row.name} is a reference to AWS but AWS is not configured")
            ref = row.reference or ""
            if not is_reference(ref):
                raise SecretError(f"{row.name}: bad reference")
            return self.resolver.resolve(parse(ref))
        if row.ciphertext is None:
            raise SecretError(f"{row.name} has no value")
        sealed = Sealed(bytes(row.ciphertext), row.key_id, _bytes(row.wrapped_key))
        return self.cipher.open(sealed, _aad(row))


def _bytes(b: bytes | None) -> bytes | None:
    return bytes(b) if b is not None else None
