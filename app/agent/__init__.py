"""The agent: the small program that runs jobs on a machine (see docs/agent-protocol.md).

``runner`` runs steps (shared with `ployd run`), ``workspace`` fetches the code,
``client`` speaks the protocol, ``agent`` is the claim/run/report loop.
"""

# The agent's version, told to the server at registration (the same as the server's
# ``app.__version__``; tests/agent/test_agent_client.py holds them together).
VERSION = "0.1.0"
