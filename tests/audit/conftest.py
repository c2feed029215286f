from tests.engine.conftest import driver, engine, engine_db, engine_hooks  # noqa: F401
