"""The production line: stations that take many boards through the same steps at once.

    station.py    the station file (TOML), checked before any board is touched
    ports.py      where boards are: pyserial's ports, virtual boards; polled (hot-plug)
    steps.py      the steps, each on the library function of its command
    worker.py     one board's run (its own thread), the journal
    traveller.py  the signed record of what the line did to a board
    run.py        the station: prepare, the loop, the summary
    view.py       the live table, JSON lines
    sims.py       `--sims N`: the station's own virtual boards
Records live in the inventory (mpguard.inventory.line). docs/line.md.
"""
