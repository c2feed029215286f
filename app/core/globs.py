"""Glob patterns as GitHub Actions reads them: defined in ``app.agent.globs``.

The agent matches cache and artifact paths with them and may import nothing of the
server's, so the one definition ships with it; the server's triggers and secret scopes
use it from here.
"""

from __future__ import annotations

from app.agent.globs import (
    all_files_ignored,
    any_file_matches,
    compile_glob,
    glob_match,
    matches_any,
)

__all__ = ["all_files_ignored", "any_file_matches", "compile_glob", "glob_match", "matches_any"]
