"""Our own parametric hand model: procedural mesh, skeleton, skinning, regions and decoder topology."""
from __future__ import annotations

from models.hand.asset import HandAsset, HandAssetError, SparseCOO, load_hand_asset
from models.hand.model import HandInputError, HandModel, HandOutput

__all__ = ["HandAsset", "HandAssetError", "HandInputError", "HandModel", "HandOutput", "SparseCOO",
           "load_hand_asset"]
