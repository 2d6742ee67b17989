# mpguard agent stub at the board's root: the app itself runs from /main.py (guard.update.boot).
import gc; gc.collect()
