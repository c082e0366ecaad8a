"""Access objects: the auth server signs them, the procmgr verifies them (DESIGN.md section 3)."""
