"""The audit trail: an append-only, hash-chained log (``chain``), checked by
``ployd audit verify`` and exported by ``ployd audit export``."""
