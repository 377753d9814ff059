"""The ES stand-in's aiohttp application: routes, ES-shaped errors, product header, faults."""

from __future__ import annotations

import logging

from aiohttp import web

from tools.standins.es import routes_cluster as cluster
from tools.standins.es import routes_docs as docs
from tools.standins.es import routes_indices as indices
from tools.standins.es import routes_search as search
from tools.standins.es.claim import APIS, Api
from tools.standins.es.errors import EsError, PlainEsError
from tools.standins.es.http import RUNTIME, Runtime, check_params, error_response
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


# The handler of each claimed API (`index` has one per endpoint).
_HANDLERS: dict[str, Handler] = {
    "info": cluster.root,
    "ping": cluster.ping,
    "cluster.health": cluster.cluster_health,
    "cat.indices": cluster.cat_indices,
    "indices.create": indices.create_index,
    "indices.get": indices.get_index,
    "indices.exists": indices.index_exists,
    "indices.delete": indices.delete_index,
    "indices.get_mapping": indices.get_mapping,
    "indices.put_mapping": indices.put_mapping,
    "indices.get_settings": indices.get_settings,
    "indices.refresh": indices.refresh,
    "index": docs.index_doc,
    "index /{index}/_doc": docs.index_new_doc,
    "create": docs.create_doc,
    "get": docs.get_doc,
    "exists": docs.doc_exists,
    "delete": docs.delete_doc,
    "bulk": docs.bulk,
    "search": search.search,
    "count": search.count,
    "delete_by_query": search.delete_by_query,
}


def _claimed(api: Api, handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        check_params(api, request)
        return await handler(request)

    return checked


def build_app(state: Runtime) -> web.Application:
    """The data application of the ES stand-in: the claimed APIs, and nothing else."""
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
    endpoints = [(methods, path, api) for api in APIS for methods, path in api.endpoints]
    # Fixed paths (`/_search`) before templated ones (`/{index}`), which would swallow them.
    endpoints.sort(key=lambda e: ("{" in e[1], -e[1].count("/")))
    for methods, path, api in endpoints:
        handler = _HANDLERS.get(f"{api.name} {path}", _HANDLERS[api.name])
        for method in methods:
            app.router.add_route(method, path, _claimed(api, handler))
    # How a YAML test runner learns the cluster features (outside the claim otherwise).
    app.router.add_route("GET", "/_cluster/state", cluster.cluster_state)
    return app
