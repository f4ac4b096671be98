"""Human-readable evaluation reports (reports/compare.html)."""
