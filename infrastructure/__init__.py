"""Adapters: the SQLite event store and read store, the projection runner, the web app, the CLI."""
