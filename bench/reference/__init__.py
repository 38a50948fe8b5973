"""The reference app: the least each benchmarked workload needs (see app.py).

It shares no code with authserver and is never part of the product: it exists so
that ``make bench`` can report authserver's throughput as a ratio to it, measured
by the same harness in the same run.
"""
