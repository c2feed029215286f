"""What a job produces besides pass/fail: metrics (parsed, compared, gated) and the
notifications sent about pipelines. Pure: no I/O."""
