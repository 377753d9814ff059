"""Developer tooling: the dev stack runner and the test stand-ins."""
