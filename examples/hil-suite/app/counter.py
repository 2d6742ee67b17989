# A module of the app, tested on the board itself (test_app.py).
VERSION = "1.0.0"


def total(values):
    n = 0
    for v in values:
        n += v
    return n
