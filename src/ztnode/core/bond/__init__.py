"""Bonding (multipath): several paths to one peer used together, as ZeroTierOne 1.14.1 does.

``settings`` reads the configuration, ``flows`` classifies packets, ``qos`` measures paths the
way the reference does, ``link`` holds one path's state and liveness, ``bond`` runs the five
policies for one peer, and ``layer`` forms bonds and drives them for the node.
"""

from ztnode.core.bond.bond import Bond
from ztnode.core.bond.flows import NO_FLOW, flow_id
from ztnode.core.bond.layer import BondLayer
from ztnode.core.bond.settings import (
    BondConfigError,
    BondingSettings,
    BondPolicy,
    LinkMode,
    LinkSpec,
    PolicyTemplate,
    Reselect,
)

__all__ = [
    "NO_FLOW",
    "Bond",
    "BondConfigError",
    "BondLayer",
    "BondPolicy",
    "BondingSettings",
    "LinkMode",
    "LinkSpec",
    "PolicyTemplate",
    "Reselect",
    "flow_id",
]
