"""The GitLab bot's handlers: ``events`` (Push Hook, Tag Push Hook, Merge Request Hook)
start and stop pipelines; ``notes`` runs `/ployd ...` from merge request comments. The
forge-neutral parts are shared with GitHub (``app.handlers.pipelines``,
``app.handlers.slash``)."""
