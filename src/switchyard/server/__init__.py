"""The ASGI shell around the pipeline."""

from .app import create_app

__all__ = ["create_app"]
