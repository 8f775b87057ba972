"""Pure-torch models: parametric hand, spiral ops, DSC decoder, ROI layer, encoders, M3DHMR, DGP, geometry, export.

Nothing here imports cv2, Qt, ``app`` or ``training``.
"""
