"""Artifacts: files a job keeps, uploaded by the agent, listed on the log page, expired."""
