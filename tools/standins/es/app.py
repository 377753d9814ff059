"""The ES stand-in's aiohttp application: routes, ES-shaped errors, product header, faults."""

from __future__ import annotations

import logging

from aiohttp import web

from tools.standins.es import routes_docs as docs
from tools.standins.es import routes_indices as indices
from tools.standins.es import routes_search as search
from tools.standins.es.errors import EsError, PlainEsError
from tools.standins.es.http import RUNTIME, Runtime, error_response, refuse_unsupported_params
from tools.standins.faults import Handler, fault_middleware
from tools.standins.inflight import inflight_middleware

log = logging.getLogger("standins.es")

# ES's default `http.max_content_length`; aiohttp's own default (1 MiB) would cut bulks short.
MAX_BODY_BYTES = 100 * 1024 * 1024
_FAULT_TYPES = {
    429: "es_rejected_execution_exception",
    503: "cluster_block_exception",
}


def _fault_error(request: web.Request, status: int, message: str) -> web.StreamResponse:
    return error_response(request, EsError(status, _FAULT_TYPES.get(status, "exception"), message))


def _versioned_write(request: web.Request) -> str | None:
    """A single-document write with an external version names one task's write exactly."""
    version = request.query.get("version")
    if request.method == "GET" or version is None:
        return None
    return f"{request.path}@{version}"


@web.middleware
async def _count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    request.app[RUNTIME].requests += 1
    return await handler(request)


@web.middleware
async def _es_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        refuse_unsupported_params(request.query)
        return await handler(request)
    except EsError as exc:
        return error_response(request, exc)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return error_response(
            request,
            PlainEsError(
                405,
                f"Incorrect HTTP method for uri [{request.path_qs}] and method "
                f"[{request.method}], allowed: [{allowed}]",
            ),
        )
    except web.HTTPNotFound:
        return error_response(
            request,
            PlainEsError(
                400, f"no handler found for uri [{request.path_qs}] and method [{request.method}]"
            ),
        )
    except web.HTTPException:
        raise
    except Exception as exc:
        # A stand-in bug must be loud in the test log and still answer in ES's shape.
        log.exception("unhandled error on %s %s", request.method, request.path_qs)
        return error_response(request, EsError(500, "exception", f"stand-in error: {exc!r}"))


async def _product_header(_request: web.Request, response: web.StreamResponse) -> None:
    # The official client refuses a 2xx answer without it (UnsupportedProductError).
    response.headers["X-Elastic-Product"] = "Elasticsearch"


def build_app(state: Runtime) -> web.Application:
    """The data application of the ES stand-in."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            inflight_middleware(state.in_flight, _versioned_write),
            _count_requests,
            fault_middleware(state.faults, _fault_error),
            _es_errors,
        ],
    )
    app[RUNTIME] = state
    app.on_response_prepare.append(_product_header)
    route = app.router.add_route
    route("GET", "/", indices.root)
    route("HEAD", "/", indices.root)
    route("GET", "/_cluster/health", indices.cluster_health)
    route("GET", "/_cat/indices", indices.cat_indices)
    route("GET", "/_cat/indices/{index}", indices.cat_indices)
    route("GET", "/_mapping", indices.get_mapping)
    for method in ("GET", "POST"):
        route(method, "/_refresh", indices.refresh)
        route(method, "/_search", search.search)
        route(method, "/_count", search.count)
        route(method, "/{index}/_refresh", indices.refresh)
        route(method, "/{index}/_search", search.search)
        route(method, "/{index}/_count", search.count)
    for method in ("POST", "PUT"):
        route(method, "/_bulk", docs.bulk)
        route(method, "/{index}/_bulk", docs.bulk)
        route(method, "/{index}/_mapping", indices.put_mapping)
        route(method, "/{index}/_doc/{id}", docs.index_doc)
        route(method, "/{index}/_create/{id}", docs.create_doc)
    route("POST", "/{index}/_doc", docs.index_new_doc)
    route("POST", "/{index}/_delete_by_query", search.delete_by_query)
    route("GET", "/{index}/_mapping", indices.get_mapping)
    route("GET", "/{index}/_doc/{id}", docs.get_doc)
    route("HEAD", "/{index}/_doc/{id}", docs.doc_exists)
    route("DELETE", "/{index}/_doc/{id}", docs.delete_doc)
    route("PUT", "/{index}", indices.create_index)
    route("HEAD", "/{index}", indices.index_exists)
    route("GET", "/{index}", indices.get_index)
    route("DELETE", "/{index}", indices.delete_index)
    return app
