"""The `make bench` benchmark: wrk against a real `authserver serve` (see run.py)."""
