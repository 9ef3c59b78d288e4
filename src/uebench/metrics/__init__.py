"""The paper's unlearnability metrics: SAL per layer, the learnable threshold beta, #LP and UD."""
