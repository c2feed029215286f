"""The agent: the small program that runs jobs on a machine (see docs/agent-protocol.md).

``runner`` runs steps (shared with `ployd run`), ``workspace`` fetches the code,
``client`` speaks the protocol, ``agent`` is the claim/run/report loop.
"""
