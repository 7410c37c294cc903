"""The shop: customers, products, orders; typical ORM work for the demo's traffic."""
