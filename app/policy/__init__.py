"""Tenants' policy: allowed hardware, concurrency quotas, maximum timeout, monthly budget
(``model``), and where the engine enforces it (``enforce``)."""
