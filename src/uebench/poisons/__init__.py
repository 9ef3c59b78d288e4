"""Poisons as files: the Poison artifact, the formats people release them in, import and export."""
