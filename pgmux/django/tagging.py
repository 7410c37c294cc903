"""Tag each SQL statement with the route and view that issued it, in sqlcommenter format.

``SELECT ... /*route='products/%%3Cint%%3Apk%%3E/',view='shop.views.product'*/`` lets pgmux's
statistics, PostgreSQL's logs and pg_stat_activity say which view runs which queries. The
comment follows the sqlcommenter spec: keys sorted, values URL-encoded then quoted, ``'``
escaped. ``tag_queries`` is a Django execute wrapper; ``install`` puts it first in a
connection's ``execute_wrappers`` when the connection opens (the ``connection_created``
signal), which covers connections opened in any thread, including asgiref's.

Psycopg's client-side binding treats ``%`` as a placeholder whenever there are parameters, and
URL-encoding produces ``%``, so the comment's ``%`` are doubled in that case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pgmux.django import scope
from pgmux.django.conf import conf

__all__ = ["comment_for", "install", "tag_queries"]


def _encode(value: str) -> str:
    return quote(value, safe="/:").replace("'", "\\'")


def comment_for(request: Any) -> str | None:
    """The comment for ``request``, or None before its URL has been resolved."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    tags = {"route": str(match.route or ""), "view": str(match.view_name or match._func_path)}
    body = ",".join(
        f"{_encode(key)}='{_encode(value)}'" for key, value in sorted(tags.items()) if value
    )
    return f"/*{body}*/" if body else ""


def tag_queries(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    current = scope.current()
    if current is None or current.request is None:
        return execute(sql, params, many, context)
    comment = current.comment
    if comment is None:
        comment = comment_for(current.request)
        if comment is None:  # a middleware querying before URL resolution
            return execute(sql, params, many, context)
        current.comment = comment
    if not comment:
        return execute(sql, params, many, context)
    if params is not None:
        comment = comment.replace("%", "%%")
    return execute(f"{sql} {comment}", params, many, context)


def install(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: add the tagger once per connection wrapper.

    It goes first in the list because Django's ``execute_wrapper()`` removes the *last* wrapper
    when its block ends; appending here, inside such a block, would make it remove ours.
    """
    if tag_queries in connection.execute_wrappers or not conf.query_tags:
        return
    connection.execute_wrappers.insert(0, tag_queries)
