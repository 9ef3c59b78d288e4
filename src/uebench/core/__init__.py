"""The ground floor: errors, atomic I/O, registries, checked options, seeds, locks, progress, processes."""
