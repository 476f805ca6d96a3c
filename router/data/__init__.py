"""Data files shipped with the router, read through `importlib.resources`."""
