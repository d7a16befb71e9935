"""obmin gateway package."""
