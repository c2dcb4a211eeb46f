"""Alerts: rules evaluated over the audit trail, stored, logged, counted and sent to webhooks.

- :mod:`.rules`: the ``[[alert_rules]]`` and ``[[alert_webhooks]]`` configuration models;
- :mod:`.model`: an alert (stored) and an alert draft (what a rule produced);
- :mod:`.evaluator`: which records (and held locks) raise which alerts, with no I/O;
- :mod:`.webhook`: signed JSON delivery with retries, on background threads;
- :mod:`.engine`: the audit follower named ``alerts`` that ties them to the service.

Nothing here runs on the request path: the follower reads committed audit records in a
background thread (docs/alerts.md).
"""
