"""The offline CA: it certifies the auth servers' Ed25519 signing keys (DESIGN.md section 3).

The image host trusts one root certificate and nothing the web host says, so an auth server's
key is believed only while a certificate from that root binds it to its ``kid``, the
certificate is in its validity period and the root's current CRL does not revoke it.
``ca`` is the CA operator's side (keys never leave that machine), ``trust`` the procmgr's.
"""
