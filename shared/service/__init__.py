"""The service kit: what every aidp service is built from (issue 17 item 1).

- ``clock.utcnow()``: the one timezone-aware "now".
- ``leases``: claim, heartbeat, release and steal-after-expiry of database rows.
- ``inbox``: typed event handlers (``@handles(EventClass)``) that claim, apply, commit and
  publish in one place.
- ``states``: string enums with a transition table.
"""
