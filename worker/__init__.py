"""The per-(user, ESAF) worker: runs unprivileged, reads images, answers jobs."""
