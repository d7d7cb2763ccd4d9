"""The operations console: server-rendered pages for the seller's staff over the four services'
public HTTP APIs. It owns no tables and no business rules; every decision stays in a service."""
