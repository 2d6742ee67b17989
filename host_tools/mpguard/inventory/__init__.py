"""The inventory: every board's identity, certificates and history (docs/inventory.md).

    from mpguard.inventory import Inventory
    with Inventory.open(project_root=project.root) as inv:      # or Inventory.open("postgresql://...")
        inv.add_device(ueid, kind=..., chip=..., mac=..., public_key=..., cert_der=...,
                       provisioned_by=..., agent_version=...)

SQLAlchemy Core on SQLite (default: one file in the project, WAL) or PostgreSQL (a URL), the
same code on both; the schema is migrated with Alembic when an inventory is opened. Errors are
mpguard's: InventoryError (bad input, unknown board), DuplicateIdentity (a UEID or key that is
another board's: a clone), InventoryUnavailable (locked past the busy timeout, unreachable).
"""

from ..errors import DuplicateIdentity, InventoryError, InventoryUnavailable
from .records import REVOKE_REASONS, Certificate, Device, Event
from .store import Inventory

__all__ = [
    "Inventory",
    "Device",
    "Certificate",
    "Event",
    "InventoryError",
    "DuplicateIdentity",
    "InventoryUnavailable",
    "REVOKE_REASONS",
]
