"""The bench: its plan and runs (run), its folder layout (folder), and Ray as its executor (ray_executor)."""
