"""A program that never answers: it starts and sleeps (a server hung at start)."""

import time

time.sleep(60)
