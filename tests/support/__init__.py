"""Shared test helpers: network namespaces, privilege checks, process hygiene."""
