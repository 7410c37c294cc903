"""The shop's JSON API: the kind of ORM work a Django view typically does.

Sync views for WSGI, and a few async views (async ORM calls) for ASGI. Writes run in
``transaction.atomic()`` and lock the product row with ``select_for_update()``; right after a
write the view reads the order back, which with replicas only works with read-your-writes.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Sum
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from shop.models import Customer, Order, OrderLine, Product

PAGE = 20


def _product(p: Product) -> dict[str, Any]:
    return {"id": p.pk, "sku": p.sku, "name": p.name, "price": str(p.price), "stock": p.stock}


def _order(order: Order) -> dict[str, Any]:
    return {
        "id": order.pk,
        "customer": order.customer_id,
        "total": str(order.total),
        "lines": [
            {"product": line.product_id, "quantity": line.quantity, "price": str(line.price)}
            for line in order.lines.all()
        ],
    }


@require_GET
def product_list(request: HttpRequest) -> JsonResponse:
    page = max(0, int(request.GET.get("page", "0")))
    products = Product.objects.filter(stock__gt=0).order_by("name")[page * PAGE : (page + 1) * PAGE]
    return JsonResponse({"page": page, "products": [_product(p) for p in products]})


@require_GET
def product_detail(request: HttpRequest, pk: int) -> JsonResponse:
    product = Product.objects.filter(pk=pk).annotate(sold=Sum("lines__quantity")).first()
    if product is None:
        raise Http404("no such product")
    data = _product(product)
    data["sold"] = product.sold or 0  # type: ignore[attr-defined]
    return JsonResponse(data)


@require_GET
def customer_orders(request: HttpRequest, pk: int) -> JsonResponse:
    customer = Customer.objects.filter(pk=pk).annotate(order_count=Count("orders")).first()
    if customer is None:
        raise Http404("no such customer")
    recent = (
        Order.objects.filter(customer=customer)
        .select_related("customer")
        .prefetch_related("lines")
        .order_by("-created")[:5]
    )
    return JsonResponse(
        {
            "customer": customer.name,
            "orders": customer.order_count,  # type: ignore[attr-defined]
            "recent": [_order(o) for o in recent],
        }
    )


def _payload(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        data: dict[str, Any] = json.loads(request.body or b"{}")
        return data
    return request.POST.dict()


@csrf_exempt
@require_POST
def order_create(request: HttpRequest) -> JsonResponse:
    data = _payload(request)
    quantity = int(data.get("quantity", 1))
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=int(data["product"]))
        if product.stock < quantity:
            return JsonResponse({"error": "out of stock"}, status=409)
        order = Order.objects.create(
            customer_id=int(data["customer"]), total=product.price * Decimal(quantity)
        )
        OrderLine.objects.create(
            order=order, product=product, quantity=quantity, price=product.price
        )
        Product.objects.filter(pk=product.pk).update(stock=F("stock") - quantity)
    # Read it back outside the transaction: behind a replica router this is the read that
    # needs read-your-writes.
    order = Order.objects.prefetch_related("lines").get(pk=order.pk)
    return JsonResponse(_order(order), status=201)


@require_GET
def order_detail(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.prefetch_related("lines").filter(pk=pk).first()
    if order is None:
        raise Http404("no such order")
    return JsonResponse(_order(order))


@require_GET
def whoami(request: HttpRequest) -> JsonResponse:
    """Which server the default connection reaches (tests use it to see routing at work)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery(), current_setting('application_name')")
        in_recovery, app = cursor.fetchone()
    return JsonResponse({"in_recovery": in_recovery, "application_name": app})


async def async_product(request: HttpRequest, pk: int) -> JsonResponse:
    try:
        product = await Product.objects.aget(pk=pk)
    except Product.DoesNotExist:
        raise Http404("no such product") from None
    return JsonResponse(_product(product))


@csrf_exempt
async def async_order_create(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    data = _payload(request)
    product = await Product.objects.aget(pk=int(data["product"]))
    order = await Order.objects.acreate(customer_id=int(data["customer"]), total=product.price)
    await OrderLine.objects.acreate(order=order, product=product, quantity=1, price=product.price)
    # Read back: the router must send this to the primary (read-your-writes under ASGI).
    again = await Order.objects.filter(pk=order.pk).afirst()
    count = await OrderLine.objects.filter(order_id=order.pk).acount()
    return JsonResponse({"id": order.pk, "found": again is not None, "lines": count}, status=201)
