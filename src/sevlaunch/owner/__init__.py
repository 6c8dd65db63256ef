"""The guest owner's toolkit (pure given bytes): verify a platform, make launch sessions,
compute expected measurements, check them and build secret packets."""
