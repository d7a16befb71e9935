"""obmin adapters package."""
