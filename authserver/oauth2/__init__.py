"""Authlib wiring: the per-app authorization server, grants and endpoints."""
