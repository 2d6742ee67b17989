# mpguard agent stub (installed at the board's root): run the confirmed or trial app.
from guard import boot
boot.run()
