"""Graph queries and the prepare/finalize passes shared by every method."""
