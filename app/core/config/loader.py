"""Load a `.ployd.yml`: text -> checked, typed, immutable ``Config``.

Three passes, every error collected before anything is raised:

1. YAML, read with positions and guards (``yamlload``): syntax, size, depth, aliases,
   duplicate keys;
2. the JSON Schema (``schemas/ployd.schema.json``), errors translated into sentences;
3. semantic checks and model building (``semantic``): needs, cycles, hardware, durations,
   resources, matrix.

Errors are raised together as ``ConfigInvalid`` (each ``FILE:LINE:COL: message``).
"""

from __future__ import annotations

import os
from pathlib import Path

from app.core.config.errors import ConfigError, ConfigInvalid
from app.core.config.model import Config
from app.core.config.yamlload import MAX_BYTES, YamlFatal, load_yaml
from app.core.hardware import Catalog

DEFAULT_FILENAME = ".ployd.yml"


def load_config(
    text: str,
    filename: str = DEFAULT_FILENAME,
    catalog: Catalog | None = None,
    *,
    max_jobs: int | None = None,
) -> Config:
    """Parse and check ``text``; raises ``ConfigInvalid`` with every problem found, among
    them more than ``max_jobs`` jobs after matrix expansion (PLOYD_MAX_JOBS_PER_PIPELINE;
    None: no limit)."""
    from app.core.config.schema import schema_errors
    from app.core.config.semantic import Builder

    try:
        doc = load_yaml(text, filename)
    except YamlFatal as exc:
        raise ConfigInvalid([exc.error]) from None
    if not isinstance(doc.data, dict):
        raise ConfigInvalid(
            [
                *doc.errors,
                ConfigError(
                    filename,
                    1,
                    1,
                    "the file must be a mapping of keys (version, on, defaults, jobs), "
                    f"not {_kind(doc.data)}",
                ),
            ]
        )
    errors = list(doc.errors)
    errors.extend(schema_errors(doc))
    builder = Builder(doc, catalog or Catalog.default(), max_jobs)
    config = builder.build()
    errors.extend(builder.errors)
    if errors or config is None:
        raise ConfigInvalid(errors)
    return config


def load_config_file(
    path: str | os.PathLike[str], catalog: Catalog | None = None, *, max_jobs: int | None = None
) -> Config:
    """Read and load the file at ``path``; ``FileNotFoundError`` / ``OSError`` when it
    cannot be read, ``ConfigInvalid`` when it is not a valid configuration."""
    p = Path(path)
    name = str(path)
    size = p.stat().st_size
    if size > MAX_BYTES:
        mb = MAX_BYTES // (1024 * 1024)
        raise ConfigInvalid(
            [
                ConfigError(
                    name,
                    1,
                    1,
                    f"file is larger than {mb} MB; a .ployd.yml should be a few kilobytes",
                )
            ]
        )
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigInvalid(
            [ConfigError(name, line, col, "the file is not UTF-8 text (is it a binary file?)")]
        ) from None
    return load_config(text, name, catalog, max_jobs=max_jobs)


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"
