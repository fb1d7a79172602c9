"""Running it: the Starlette app, uvicorn and the worker supervisor, the `ticker`
command, logging.
"""
