"""Panel helpers: every panel and query uses the dashboard's `datasource` variable."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
# `[$__rate_interval]` is Grafana's window for rate(): at least four scrape intervals.
RATE = "$__rate_interval"

Target = tuple[str, str]  # (PromQL, legend)


def datasource_variable() -> DatasourceVariable:
    """The Prometheus data source the dashboard reads, chosen on import or in the UI."""
    return DatasourceVariable("datasource").label("Data source").type("prometheus")


def label_variable(name: str, label: str, source: str) -> QueryVariable:
    """A multi-value variable over the values of `label` in series `source`; "All" = .*."""
    return (
        QueryVariable(name)
        .label(name.capitalize())
        .datasource(DATASOURCE)
        .query(f"label_values({source}, {label})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def _query(ref: str, expr: str, legend: str) -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().ref_id(ref).expr(expr).legend_format(legend).datasource(DATASOURCE)
    )


def graph(
    title: str,
    unit: str,
    *targets: Target,
    description: str = "",
    width: int = 12,
) -> timeseries.Panel:
    """A time series panel."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(8)
        .fill_opacity(10)
    )
    for index, (expr, legend) in enumerate(targets):
        panel = panel.with_target(_query(chr(ord("A") + index), expr, legend))
    return panel


def single(title: str, unit: str, expr: str, description: str = "") -> stat.Panel:
    """A stat panel with one number (the last value)."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(6)
        .height(4)
        .with_target(_query("A", expr, ""))
    )


BREAKER_STATES = [
    model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="closed", color="green", index=0),
            "1": model.ValueMappingResult(text="half-open", color="orange", index=1),
            "2": model.ValueMappingResult(text="open", color="red", index=2),
        }
    )
]


def states(title: str, expr: str, legend: str, description: str = "") -> statetimeline.Panel:
    """A state timeline of circuit breakers (0 closed, 1 half-open, 2 open)."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .mappings(BREAKER_STATES)  # type: ignore[arg-type]
        .span(12)
        .height(8)
        .with_target(_query("A", expr, legend))
    )


def quantiles(title: str, bucket: str, selector: str, by: str = "") -> timeseries.Panel:
    """p50, p95 and p99 of a histogram."""
    group = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    return graph(
        title,
        "s",
        *(
            (
                f"histogram_quantile({q}, sum by ({group}) (rate({bucket}{{{selector}}}[{RATE}])))",
                f"p{round(q * 100)}{suffix}",
            )
            for q in (0.5, 0.95, 0.99)
        ),
    )
