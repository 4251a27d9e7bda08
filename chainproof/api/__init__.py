"""The team server (FastAPI over the service); see :mod:`chainproof.api.app`."""

from chainproof.api.app import create_app

__all__ = ["create_app"]
