"""The stateless broker between clients (ROUTER) and procmgrs (DEALER)."""
