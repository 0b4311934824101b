"""The contract between the front ends and the workers: what both sides read and write.

The queue (arq job ids), progress events on Redis, the result manifest, the musical analysis,
the errors whose message a user sees, metrics counters and reconciliation of Redis with the
database. Nothing here imports torch, librosa or the pipeline: the bots and `stembot web` load
only this package of the worker's (an import-linter contract in .ci/run keeps it so).
"""
