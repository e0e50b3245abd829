"""Cache tiers: the in-process L1 (:mod:`.memory`) and the protocols every tier follows."""
