"""The pure domain: no I/O libraries (aiohttp, boto3, SQLAlchemy, gidgethub) are imported here."""
