"""The database's lifecycle: revisions, upgrades and downgrades, plans, state, drift, adoption, the model."""
