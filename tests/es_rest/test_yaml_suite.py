"""Elasticsearch's own YAML REST tests against the stand-in (and a real cluster when
`ELASTICSEARCH_URL` is set): every test inside the stand-in's claim must pass; the others are
counted and listed, with the reason, in the run's summary and as skips.
"""

from __future__ import annotations

import pytest

from tests.es_rest.claimcheck import outside_claim
from tests.es_rest.conftest import OUTCOMES, Outcome
from tests.es_rest.requirements import unmet
from tests.es_rest.runner import run_test
from tests.es_rest.suite import Section, SuiteFile, discover
from tests.es_rest.target import Target

CASES = [(file, test) for file in discover() for test in file.tests]


def _run(target: Target, file: SuiteFile, test: Section) -> None:
    name = f"{file.path} :: {test.name}"
    condition = unmet(file, test, target.cluster)
    outside = outside_claim(file, test)
    if condition is not None and condition[0] == "suite":
        _not_run(target, name, "not run by the suite here", condition[1])
    if outside:
        _not_run(target, name, "outside the claim", "; ".join(outside))
    if condition is not None:
        kind, why = condition
        # A cluster feature the stand-in does not declare is a limit of its claim; a runner
        # feature this runner lacks is a limit of the runner.
        _not_run(target, name, "outside the claim" if kind == "cluster" else "runner", why)
    before = None if target.name == "standin" else target.indices()
    try:
        run_test(target.http, file.setup, test, file.teardown)
    except BaseException as exc:
        OUTCOMES.append(Outcome(target.name, name, "failed", str(exc)[:300]))
        raise
    finally:
        target.clean(before)
    OUTCOMES.append(Outcome(target.name, name, "passed"))


def _not_run(target: Target, name: str, verdict: str, why: str) -> None:
    OUTCOMES.append(Outcome(target.name, name, verdict, why))
    pytest.skip(f"{verdict}: {name}: {why}")


@pytest.mark.parametrize(("file", "test"), CASES, ids=[f"{f.path}::{t.name}" for f, t in CASES])
def test_on_the_standin(standin_target: Target, file: SuiteFile, test: Section) -> None:
    _run(standin_target, file, test)


@pytest.mark.parametrize(("file", "test"), CASES, ids=[f"{f.path}::{t.name}" for f, t in CASES])
def test_on_a_real_cluster(real_target: Target, file: SuiteFile, test: Section) -> None:
    _run(real_target, file, test)
