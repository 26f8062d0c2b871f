"""Inbound protocol adapters. Nothing here imports ``switchyard.providers``; the two meet in ``messages``."""
