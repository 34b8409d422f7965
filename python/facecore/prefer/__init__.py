"""facecore.prefer (work in progress)."""
