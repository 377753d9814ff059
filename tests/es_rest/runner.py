"""Running one YAML REST test: setup, the test's steps, teardown, with a stash of values.

Steps: `do` (with `catch`, `headers`, `warnings`, `allowed_warnings`, the client's `ignore`),
`set`, `match`, `is_true`, `is_false`, `length`, `gt`/`gte`/`lt`/`lte`, `contains`,
`close_to`, `exists`; `skip`/`requires` are judged before a test runs (`requirements`).
Values are `$name` (or `${name}` inside text) from the stash; paths are dotted (`a.0.b`,
`\\.` for a dot inside a key, `$name` for a stashed key, `_arbitrary_key_`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.es_rest.client import ParamError, Response, call
from tests.es_rest.suite import Section, Step

_CATCH_STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "missing": 404,
    "request_timeout": 408,
    "conflict": 409,
    "unavailable": 503,
}
_DO_KEYS = frozenset(
    {"catch", "headers", "warnings", "allowed_warnings", "warnings_regex", "allowed_warnings_regex"}
)
_SKIPPED_STEPS = frozenset({"skip", "requires"})
_WARNING = re.compile(r'^\d{3} \S+ "((?:[^"\\]|\\.)*)"')


class StepFailed(AssertionError):
    """A step whose expectation the cluster did not meet."""


def _regex(value: Any, flags: int = re.VERBOSE) -> re.Pattern[str] | None:
    """`/.../` as a pattern: with the X flag in `match` (as the suite defines it), plain in
    `catch`."""
    if isinstance(value, str) and len(value) > 1 and value.strip().startswith("/"):
        text = value.strip()
        if text.endswith("/"):
            return re.compile(text[1:-1], flags)
    return None


def _split(path: str) -> list[str]:
    if path in ("", "$body"):
        return []
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", path)]


@dataclass
class Run:
    """One test's state: the cluster, the stash and the last response."""

    http: httpx.Client
    stash: dict[str, Any] = field(default_factory=dict)
    response: Response | None = None

    # -- values and paths ------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """`value` with stashed values in place of `$name` and `${name}`."""
        if isinstance(value, str):
            if value.startswith("$") and value[1:] in self.stash:
                return self.stash[value[1:]]
            return re.sub(
                r"\$\{(\w+)\}",
                lambda m: str(self.stash[m.group(1)]) if m.group(1) in self.stash else m.group(0),
                value,
            )
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {self.resolve(k): self.resolve(v) for k, v in value.items()}
        return value

    def lookup(self, path: str) -> tuple[bool, Any]:
        """Whether `path` exists in the last response, and its value."""
        if self.response is None:
            raise StepFailed(f"no response to read {path!r} from")
        value: Any = self.response.body
        for raw in _split(path):
            part = self.resolve(raw)
            if isinstance(value, list):
                try:
                    value = value[int(part)]
                except (ValueError, IndexError):
                    return False, None
            elif isinstance(value, dict):
                if part == "_arbitrary_key_":
                    if not value:
                        return False, None
                    part = next(iter(value))
                    value = part
                    continue
                if str(part) not in value:
                    return False, None
                value = value[str(part)]
            else:
                return False, None
        return True, value

    def value(self, path: str) -> Any:
        """The value at `path`, None when absent."""
        return self.lookup(path)[1]

    # -- steps -------------------------------------------------------------------------------

    def run(self, section: Section) -> None:
        """Run a section's steps in order."""
        for number, (kind, body) in enumerate(section.steps, start=1):
            if kind in _SKIPPED_STEPS:
                continue
            method = getattr(self, f"_step_{kind}", None)
            if method is None:
                raise StepFailed(f"step {number} ({kind}): not a step this runner knows")
            try:
                method(body)
            except StepFailed as exc:
                raise StepFailed(f"{section.name} step {number} ({kind}): {exc}") from None

    def _step_do(self, body: dict[str, Any]) -> None:
        options = {k: v for k, v in body.items() if k in _DO_KEYS}
        calls = [(k, v) for k, v in body.items() if k not in _DO_KEYS and k != "node_selector"]
        if len(calls) != 1:
            raise StepFailed(f"a do step needs exactly one API call, found {list(body)}")
        ((name, raw_args),) = calls
        args = dict(self.resolve(raw_args or {}))
        ignored = args.pop("ignore", None)
        ignore = {int(s) for s in (ignored if isinstance(ignored, list) else [ignored]) if s}
        headers = {str(k): str(v) for k, v in self.resolve(options.get("headers") or {}).items()}
        catch = options.get("catch")
        try:
            self.response = call(self.http, name, args, headers)
        except ParamError as exc:
            if catch == "param":
                self.response = None
                return
            raise StepFailed(str(exc)) from None
        self.stash["body"] = self.response.text
        self._check_warnings(options)
        self._check_catch(catch, ignore)

    def _check_catch(self, catch: Any, ignore: set[int]) -> None:
        response = self.response
        assert response is not None
        if catch is None:
            if response.is_error and response.status not in ignore:
                raise StepFailed(f"unexpected error {response.status}: {response.text[:500]}")
            return
        if not response.is_error:
            raise StepFailed(f"expected an error ({catch}), got {response.status}")
        pattern = _regex(catch, flags=0)
        if pattern is not None:
            # Matched against the `error` value as text, as ES's runner does.
            error = response.body.get("error") if isinstance(response.body, dict) else None
            if error is None or not pattern.search(_as_text(error)):
                raise StepFailed(f"error {response.text[:500]} does not match {catch}")
        elif catch == "request":
            if response.status in _CATCH_STATUS.values():
                raise StepFailed(f"expected an unnamed error, got {response.status}")
        elif catch == "param" or _CATCH_STATUS.get(catch) != response.status:
            raise StepFailed(f"expected {catch}, got {response.status}: {response.text[:500]}")

    def _check_warnings(self, options: dict[str, Any]) -> None:
        assert self.response is not None
        got = [m.group(1) if (m := _WARNING.match(w)) else w for w in self.response.warnings]
        expected = list(options.get("warnings") or [])
        allowed = expected + list(options.get("allowed_warnings") or [])
        patterns = [
            re.compile(p)
            for p in [
                *options.get("warnings_regex", []),
                *options.get("allowed_warnings_regex", []),
            ]
        ]
        missing = [w for w in expected if w not in got]
        missing += [
            p for p in options.get("warnings_regex", []) if not any(re.search(p, g) for g in got)
        ]
        unexpected = [g for g in got if g not in allowed and not any(p.search(g) for p in patterns)]
        if missing or unexpected:
            raise StepFailed(f"warnings: missing {missing}, unexpected {unexpected}")

    def _step_set(self, body: dict[str, str]) -> None:
        for path, name in body.items():
            self.stash[name] = self.value(path)

    def _step_match(self, body: dict[str, Any]) -> None:
        for raw_path, raw_expected in body.items():
            expected = self.resolve(raw_expected)
            pattern = _regex(expected)
            path = str(raw_path)
            if path == "$body" and pattern is not None and self.response is not None:
                actual: Any = self.response.text
            else:
                actual = self.value(self.resolve(path) if path.startswith("$") else path)
            if pattern is not None:
                if actual is None or not pattern.search(str(actual)):
                    raise StepFailed(f"{path}: {actual!r} does not match {expected}")
            elif not _equal(actual, expected):
                raise StepFailed(f"{path}: expected {expected!r}, got {actual!r}")

    def _step_is_true(self, path: str) -> None:
        found, value = self.lookup(str(path))
        if not found or not _truthy(value):
            raise StepFailed(f"{path!r} is not true: {value!r}")

    def _step_is_false(self, path: str) -> None:
        found, value = self.lookup(str(path))
        if found and _truthy(value):
            raise StepFailed(f"{path!r} is not false: {value!r}")

    def _step_exists(self, path: str) -> None:
        if not self.lookup(str(path))[0]:
            raise StepFailed(f"{path!r} does not exist")

    def _step_length(self, body: dict[str, Any]) -> None:
        for path, expected in body.items():
            actual = self.value(path)
            if not isinstance(actual, list | dict | str) or len(actual) != self.resolve(expected):
                raise StepFailed(f"{path}: length {expected} expected, got {actual!r}")

    def _compare(self, body: dict[str, Any], op: str) -> None:
        for path, raw in body.items():
            expected, actual = self.resolve(raw), self.value(path)
            checks = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            try:
                ok = checks[op](actual, expected)
            except TypeError:
                ok = False
            if not ok:
                raise StepFailed(f"{path}: {actual!r} is not {op} {expected!r}")

    def _step_gt(self, body: dict[str, Any]) -> None:
        self._compare(body, "gt")

    def _step_gte(self, body: dict[str, Any]) -> None:
        self._compare(body, "gte")

    def _step_lt(self, body: dict[str, Any]) -> None:
        self._compare(body, "lt")

    def _step_lte(self, body: dict[str, Any]) -> None:
        self._compare(body, "lte")

    def _step_contains(self, body: dict[str, Any]) -> None:
        for path, raw in body.items():
            expected, actual = self.resolve(raw), self.value(path)
            if isinstance(actual, str) and isinstance(expected, str):
                ok = expected in actual
            elif isinstance(actual, list) and isinstance(expected, dict):
                ok = any(
                    isinstance(item, dict)
                    and all(_equal(item.get(k), v) for k, v in expected.items())
                    for item in actual
                )
            else:
                ok = isinstance(actual, list) and any(_equal(i, expected) for i in actual)
            if not ok:
                raise StepFailed(f"{path}: {actual!r} does not contain {expected!r}")

    def _step_close_to(self, body: dict[str, Any]) -> None:
        for path, spec in body.items():
            actual = self.value(path)
            if not isinstance(actual, int | float) or not math.isclose(
                actual, spec["value"], abs_tol=spec["error"]
            ):
                raise StepFailed(
                    f"{path}: {actual!r} is not within {spec['error']} of {spec['value']}"
                )


def _as_text(value: Any) -> str:
    """A parsed JSON value as Java prints maps and lists: `{type=x, reason=y}`."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_as_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_as_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _truthy(value: Any) -> bool:
    # The runners' rule: null, false, "", "false", 0 and "0" are false; {} and [] are true.
    if value is None or value is False or value in ("", "false", "0"):
        return False
    return not (isinstance(value, int | float) and not isinstance(value, bool) and value == 0)


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(actual) == float(expected)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(_equal(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(_equal(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


def run_test(
    http: httpx.Client, setup: Section | None, test: Section, teardown: Section | None
) -> None:
    """Setup, then the test, then teardown (run even when the test failed), one stash."""
    state = Run(http)
    try:
        if setup is not None:
            state.run(setup)
        state.run(test)
    finally:
        if teardown is not None:
            state.run(teardown)


__all__ = ["Step", "StepFailed", "run_test"]
