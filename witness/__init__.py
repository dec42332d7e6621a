"""Witness cosigning and RFC 3161 timestamping (uses `log`, never the other way round)."""
