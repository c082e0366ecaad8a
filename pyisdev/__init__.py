"""The development harness: the stack as real processes (is-dev, tests, benches)."""
