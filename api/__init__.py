"""HTTP API, client and command line for the log (uses `log`, never the other way round)."""
