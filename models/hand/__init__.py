"""Our own parametric hand model: procedural mesh, skeleton, skinning, regions and decoder topology."""
