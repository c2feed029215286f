"""Executors: where agents run. ``LocalExecutor`` keeps warm agent processes on this
machine; an EC2 executor will launch instances running the same agent."""

from app.executors.base import Executor
from app.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
