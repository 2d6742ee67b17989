# `network` on the virtual board: a stub that loads _simwlan at the first use of a name.
import _simhw


def __getattr__(name):
    return getattr(_simhw.load("_simwlan"), name)
