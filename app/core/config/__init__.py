"""The `.ployd.yml` language: model, loader, errors.

Import ``load_config`` / ``load_config_file`` from ``app.core.config.loader`` (this package
keeps its own import cheap).
"""

from app.core.config.errors import ConfigError, ConfigInvalid

__all__ = ["ConfigError", "ConfigInvalid"]
