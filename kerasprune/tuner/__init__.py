"""Keras Tuner searches over compression settings, and distributed runs (issue 16).

Empty until that issue lands.
"""
