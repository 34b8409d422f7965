"""facecore.label (work in progress)."""
