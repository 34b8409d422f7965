"""facecore.video (work in progress)."""
