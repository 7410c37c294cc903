"""The shop's routes."""

from __future__ import annotations

from django.urls import path

from shop import views

urlpatterns = [
    path("products/", views.product_list, name="product-list"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("customers/<int:pk>/orders/", views.customer_orders, name="customer-orders"),
    path("orders/", views.order_create, name="order-create"),
    path("orders/<int:pk>/", views.order_detail, name="order-detail"),
    path("whoami/", views.whoami, name="whoami"),
    path("async/products/<int:pk>/", views.async_product, name="async-product"),
    path("async/orders/", views.async_order_create, name="async-order-create"),
]
