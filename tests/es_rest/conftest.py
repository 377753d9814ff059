"""The YAML suite's targets and its summary: counts inside and outside the claim, listed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.es_rest.target import REAL_URL, Target, open_target
from tests.support.standins import Standin


@dataclass(frozen=True)
class Outcome:
    """What became of one YAML test on one target."""

    target: str
    test: str
    # passed, failed, outside the claim, not run by the suite here, runner (lacks a feature)
    verdict: str
    reason: str = ""


OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="session")
def standin_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    server = Standin("elasticsearch", tmp_path_factory.mktemp("es-rest")).start()
    target = open_target("standin", server.url, server.reset)
    yield target
    target.http.close()
    server.stop()


@pytest.fixture(scope="session")
def real_target() -> Iterator[Target]:
    if REAL_URL is None:
        pytest.skip("ELASTICSEARCH_URL is not set: set it to run the suite on a real cluster")
    target = open_target("real", REAL_URL)
    yield target
    target.http.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Per target: how many tests passed or failed inside the claim, which were outside."""
    if not OUTCOMES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("Elasticsearch YAML REST suite")
    for target in sorted({o.target for o in OUTCOMES}):
        mine = [o for o in OUTCOMES if o.target == target]
        counts = Counter(o.verdict for o in mine)
        inside = counts["passed"] + counts["failed"]
        write(
            f"{target}: {len(mine)} tests; inside the claim {inside} (passed "
            f"{counts['passed']}, failed {counts['failed']}); outside the claim "
            f"{counts['outside the claim']}; not run by the suite here "
            f"{counts['not run by the suite here']}; needing runner features this runner "
            f"lacks {counts['runner']}"
        )
        for outcome in sorted(mine, key=lambda o: (o.verdict, o.test)):
            if outcome.verdict not in ("passed",):
                write(f"  {outcome.verdict}: {outcome.test} -- {outcome.reason}")
