from tests.engine.conftest import driver, engine  # noqa: F401
