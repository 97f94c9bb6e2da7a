"""Frozen towers, prompt pools and the RebQ learner. Free of ray, fastapi and prometheus."""
