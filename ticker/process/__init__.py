"""How one process is set up and paced: its settings, aligned ticks, and how its
background tasks are stopped.
"""
