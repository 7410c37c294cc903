"""pgmux: a PostgreSQL connection pooler in Python, a drop-in for PgBouncer, built for Django."""

__version__ = "0.1.0"
