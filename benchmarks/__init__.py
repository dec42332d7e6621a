"""auditlog's performance suite; see conftest.py for the modes and the results file."""
