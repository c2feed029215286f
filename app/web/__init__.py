"""The aiohttp layer: it verifies, records and dispatches; logic lives elsewhere."""
