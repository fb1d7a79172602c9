"""The editorial side over Redis: desk accounts, sessions, sign-in and roles, the
audit trail, held-back jobs and their scheduler, and the desk's view of a node.
"""
