"""A small shop, the Django project that ``pgmux demo`` and tests/django run through pgmux."""
