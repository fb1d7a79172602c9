"""How readers and publishers reach a node over HTTP: the websocket endpoint, SSE,
feeds, the JSON API and its contract document, CORS, and the HTTP middleware.
"""
