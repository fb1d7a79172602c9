"""The Redis edge: connecting, the key schema, appending, tokens, dead letters, the
reader that feeds the hub, reach counts, the embedded server, Python publishing.
"""
