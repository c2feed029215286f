"""Adapters: one package per outside system (GitHub, GitLab, EC2, S3, the database).

Each adapter keeps its I/O at one point and exposes a small typed API; core never
imports them.
"""
