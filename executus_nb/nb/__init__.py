"""Notebook views of runs: the live ``RunView`` widget and its static HTML and text renderings.

Importing this package imports ipywidgets; the core never does at import time.
"""
