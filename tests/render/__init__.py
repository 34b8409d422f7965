"""Tests of facecore.render."""
