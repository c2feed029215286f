"""`ployd`: the command line (one module per subcommand; ``main`` dispatches)."""

from app.cli.dispatch import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
