"""Serving CAJNN through MLflow (pyfunc, registry, promotion)."""
