"""Access control: identities hold roles per namespace; tokens carry one identity (I6)."""

from chainproof.access.matrix import (
    EXPERIMENT,
    GOVERNED,
    WRITE_PERMISSION,
    NamespaceMode,
    Permission,
    Role,
    permissions,
)

__all__ = ["EXPERIMENT", "GOVERNED", "WRITE_PERMISSION", "NamespaceMode", "Permission", "Role",
           "permissions"]
