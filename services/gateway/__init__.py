"""The gateway service: REST API, WebSocket status streams, event log."""
