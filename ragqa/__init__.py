"""The `ragqa` command: composes ingest, app (serving, answering, operations) and eval; no package imports it."""
