"""The operations of an OpenAPI contract under contracts/, for conformance tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import ROOT

CONTRACTS = ROOT / "contracts"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@dataclass(frozen=True)
class Operation:
    """One (path, method) of a contract, its parameters and documented answers resolved."""

    path: str
    method: str
    operation_id: str
    parameters: tuple[dict[str, Any], ...]
    request_schema: dict[str, Any] | None
    responses: dict[str, dict[str, Any]]

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path}"

    def takes_header(self, name: str) -> bool:
        """Whether the operation declares header parameter `name` as required."""
        return any(
            p["in"] == "header" and p["name"].lower() == name.lower() and p.get("required")
            for p in self.parameters
        )

    def required_query(self) -> set[str]:
        """Names of the required query parameters."""
        return {p["name"] for p in self.parameters if p["in"] == "query" and p.get("required")}

    def success_codes(self) -> set[int]:
        """The documented 2xx statuses."""
        return {int(code) for code in self.responses if code.isdigit() and code.startswith("2")}


class Contract:
    """An OpenAPI 3 document loaded with `yaml.safe_load`; local `$ref`s resolve."""

    def __init__(self, path: Path) -> None:
        self.spec: dict[str, Any] = yaml.safe_load(path.read_text())

    def resolve(self, node: Any) -> Any:
        """`node` with a local `$ref` followed (repeatedly)."""
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.spec
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def operations(self) -> list[Operation]:
        """Every (path, method) in document order."""
        found = []
        for path, item in self.spec["paths"].items():
            shared = [self.resolve(p) for p in item.get("parameters", [])]
            for method in _METHODS:
                if method not in item:
                    continue
                op = item[method]
                body = self.resolve(op.get("requestBody", {}))
                schema = body.get("content", {}).get("application/json", {}).get("schema")
                found.append(
                    Operation(
                        path=path,
                        method=method,
                        operation_id=op["operationId"],
                        parameters=tuple(
                            shared + [self.resolve(p) for p in op.get("parameters", [])]
                        ),
                        request_schema=self.resolve(schema) if schema else None,
                        responses={c: self.resolve(r) for c, r in op["responses"].items()},
                    )
                )
        return found

    def properties(self, schema: Any) -> set[str] | None:
        """Property names of an object schema (allOf merged); None if it names none."""
        schema = self.resolve(schema)
        names: set[str] = set(schema.get("properties", {}))
        for part in schema.get("allOf", []):
            names |= self.properties(part) or set()
        return names or None

    def required(self, schema: Any) -> set[str]:
        """Required property names of an object schema (allOf merged)."""
        schema = self.resolve(schema)
        names = set(schema.get("required", []))
        for part in schema.get("allOf", []):
            names |= self.required(part)
        return names
