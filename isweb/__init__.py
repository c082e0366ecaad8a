"""is-web: the HTTP gateway and browser viewer (a front-end like is.js, with no authority)."""
