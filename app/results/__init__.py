"""Results besides pass/fail: attempts' metrics received and gated (``metrics``), and
notifications about pipelines sent outside the forge (``notify``)."""
