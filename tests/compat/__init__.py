"""The client compatibility matrix (docs/compatibility.md) and named prepared statements."""
