"""The run page's charts: a key ending in `*` draws one line per metric with that prefix."""

from types import SimpleNamespace

from app.jobs.charts import metric_chart


def test_a_wildcard_key_draws_every_metric_it_names_and_only_those():
    events = [
        SimpleNamespace(metrics={"step": 1, "reward/component/helpful": 0.1, "reward/component/hate": -0.2}),
        SimpleNamespace(metrics={"step": 2, "reward/component/helpful": 0.4, "reward/score": 3.0}),
    ]
    chart = metric_chart("Each reward", events, ["reward/component/*"])
    assert [line.name for line in chart.lines] == ["reward/component/hate", "reward/component/helpful"]
    assert chart.lines[1].last == 0.4
    assert metric_chart("None", events, ["loss/*"]) is None
