"""One process's runtime: the hub, reader, store, newsroom and background tasks it owns,
its worker identity, its metrics and the desk's live-feed notifier.
"""
