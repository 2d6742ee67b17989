# mpguard agent stub at the board's root: the app itself runs from /main.py (guard.boot.run).
import gc; gc.collect()
