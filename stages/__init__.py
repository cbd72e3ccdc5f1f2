"""Pipeline stages: each one reads its inputs from disk and writes its outputs to disk.

The daemon knows stages only through the contract in ``stages.base`` and runs each
in a child process (``python -m stages.child``), so nothing heavy is ever imported
into the daemon itself.
"""
