"""The GitHub App's handlers, one module per feature, registered on gidgethub routers:

* ``installations``: installations and their repositories become tenants.
* ``events``: push, pull_request, check_suite, merge_group start and stop pipelines.
* ``slash``: `/ployd ...` in PR comments, and the check run buttons.

``app.handlers.inbox_worker`` feeds them the inbox, one delivery at a time, after the
webhook answered.
"""
