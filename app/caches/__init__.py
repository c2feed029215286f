"""Caches: archives of a job's `cache.paths`, per repository, restored by key or prefix."""
