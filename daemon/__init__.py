"""The InstaRecon3D daemon: watches the inbox, keeps the job store, supervises stages.

It stays light on purpose: no torch, no pycolmap; heavy work runs in stage child
processes (see ``stages.child``).
"""

__version__ = "0.1.0"
