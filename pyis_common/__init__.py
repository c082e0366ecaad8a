"""Code shared by the proxy, the procmgr, the workers and the clients: errors, framing, requests."""
