"""The HTTP API: Litestar controllers that translate requests into commands and queries."""
