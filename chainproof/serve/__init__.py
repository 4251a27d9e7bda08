"""Verified serving (I5): models leave chainproof only through :func:`load_verified`."""

from chainproof.serve.load import LoadedModel, load_verified

__all__ = ["LoadedModel", "load_verified"]
