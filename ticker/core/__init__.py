"""The pure core: the stream entry contract, the fold, the messages and the fan-out.

Nothing here does I/O or reads the clock (`now` is passed in), and nothing here
imports Redis, Starlette or uvicorn (import-linter checks it: docs/architecture.md).
"""
