"""``uvicorn chainproof.api.factory:app --factory``: the server for the current settings."""

from __future__ import annotations

from fastapi import FastAPI

from chainproof.api.app import create_app
from chainproof.workspace import load_settings


def app() -> FastAPI:
    return create_app(load_settings())
