"""Handlers: one module per feature, between the web layer and the engine."""
