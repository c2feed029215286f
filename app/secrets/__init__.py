"""Secrets: values encrypted at rest (``crypto``), stored per repository with branch
scopes (``store``), and references to AWS Secrets Manager or SSM Parameter Store
resolved when a job is dispatched (``references``)."""
