"""The root-side process manager: verify access objects, route to per-(user, ESAF) workers."""
