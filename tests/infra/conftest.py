"""Fixtures of tests/infra: the Terraform module, parsed once per session."""

from __future__ import annotations

import pytest

from tests.infra.tfparse import TF_DIR, Module, load_module, module_dirs


@pytest.fixture(scope="session")
def root() -> Module:
    """infra/terraform itself."""
    return load_module(TF_DIR)


@pytest.fixture(scope="session")
def all_modules() -> list[Module]:
    """infra/terraform first, then its submodules and examples."""
    return [load_module(d) for d in module_dirs()]
