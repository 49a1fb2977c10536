"""aidp's common library: events, bus, db, outbox/inbox, settings, secrets, crypto, telemetry,
errors."""
