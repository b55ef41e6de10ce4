"""HTTP API and pages (FastAPI)."""
