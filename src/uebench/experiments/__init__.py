"""The experiments: their shared workspace, the bench, cross-task learnability, the landscape, the SAL sweep."""
