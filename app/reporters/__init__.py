"""Reporters: engine state changes in, forge calls out (Buildbot's reporters' shape).

``views`` turns stored pipelines into the core's report views; ``github`` keeps one check
run per job and one summary comment per pull request in step with them.
"""
