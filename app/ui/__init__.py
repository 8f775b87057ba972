"""The desktop user interface: the only package that imports PyQt6."""
