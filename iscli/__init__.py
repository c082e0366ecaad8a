"""``is-cli`` and the client library it is built on: what staff and scripts run, not the server."""
