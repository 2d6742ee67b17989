# Freeze the mpguard agent into a firmware build (manufacturers):
#   FROZEN_MANIFEST=.../agent/manifest.py make -C ports/esp32
metadata(description="mpguard device agent", version="0.1.0", license="MIT")
package("guard")
