"""The editors' desk over HTTP: its pages, its JSON endpoints and live feed, and the
admins' endpoints for users and tokens.
"""
