"""The facts of pipeline/lineage.py on small hand-made graphs: what passed, the window, the
drift reference, warm start, the baseline, rollbacks, the served model. The same functions run
on ML Metadata and Vertex ML Metadata (the e2e stories); here each rule is pinned down."""

from __future__ import annotations

import itertools
import json

from pipeline import lineage
from pipeline.lineage import Artifact, Event, Execution, Graph, Run


class Builder:
    """Records executions and artifacts in order, as a store would."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.artifacts: list[Artifact] = []
        self.executions: list[Execution] = []
        self.events: list[Event] = []
        self.runs: list[Run] = []

    def artifact(self, type_name: str, uri: str, **props) -> Artifact:
        n = next(self.ids)
        a = Artifact(str(n), type_name, uri, props, n, n)
        self.artifacts.append(a)
        return a

    def execution(self, component: str, inputs=(), outputs=(), state=lineage.RAN) -> Execution:
        n = next(self.ids)
        e = Execution(str(n), component, state, {}, n, n, n)
        self.executions.append(e)
        self.events += [Event(e.ref, a.ref, False, a.type) for a in inputs]
        self.events += [Event(e.ref, a.ref, True, a.type) for a in outputs]
        self.runs.append(Run(f"run-{n}", n, (e.ref,), n))
        return e

    def graph(self) -> Graph:
        return Graph("p", self.runs, self.executions, self.artifacts, self.events)

    # ----- a pipeline's steps
    def ingest(self, span: int) -> Artifact:
        examples = self.artifact("Examples", f"/ex/{next(self.ids)}", span=span, input_fingerprint="f")
        self.execution("example_gen", outputs=[examples])
        return examples

    def gate(self, examples: Artifact, passed: bool, reference: Artifact | None = None) -> Artifact | None:
        if not passed:
            self.execution("data_gate", inputs=[examples], state=lineage.FAILED)
            return None
        result = self.artifact(
            lineage.GATE_RESULT_TYPE,
            f"/gate/{next(self.ids)}",
            span=examples.props["span"],
            reference_span=lineage.span_of(reference) if reference else -1,
            reference_uri=reference.uri if reference else "",
        )
        self.execution("data_gate", inputs=[examples], outputs=[result])
        return result

    def train(self, window: list[Artifact], warm: Artifact | None = None) -> Artifact:
        model = self.artifact(
            "Model",
            f"/model/{next(self.ids)}",
            window=json.dumps([a.uri for a in window]),
            warm_start_from=warm.uri if warm else "",
        )
        self.execution("trainer", outputs=[model])
        return model

    def evaluate(self, model: Artifact, blessed: bool, baseline: Artifact | None = None) -> Artifact:
        blessing = self.artifact(
            "ModelBlessing", f"/bless/{next(self.ids)}", blessed=int(blessed), baseline_model=baseline.uri if baseline else ""
        )
        self.execution("evaluator", inputs=[model], outputs=[blessing])
        return blessing

    def push(self, model: Artifact, version: str) -> Artifact:
        pushed = self.artifact("PushedModel", f"/serving/{version}", pushed=1, pushed_version=version)
        self.execution("pusher", inputs=[model], outputs=[pushed])
        return pushed


def test_only_passed_copies_enter_the_window_and_the_drift_reference():
    b = Builder()
    s1 = b.ingest(1)
    b.gate(s1, True)
    s2 = b.ingest(2)
    r2 = b.gate(s2, True)
    s2_again = b.ingest(2)  # span 2 re-delivered with bad rows: rejected
    b.gate(s2_again, False)
    s3 = b.ingest(3)
    g = b.graph()
    assert [e.ref for e, _ in lineage.passes(g)] == [s2.ref, s1.ref]  # newest pass first
    assert lineage.drift_reference(g, s3).ref == r2.ref
    assert [a.ref for a in lineage.training_window(g, s3, 3)] == [s3.ref, s2.ref, s1.ref]
    assert [a.ref for a in lineage.training_window(g, s3, 2)] == [s3.ref, s2.ref]
    assert [a.ref for a in lineage.training_window(g, s3, 1)] == [s3.ref]
    assert lineage.drift_reference(g, s1) is None  # nothing older passed


def test_a_rejected_span_is_skipped_by_the_window_and_the_reference():
    b = Builder()
    s1 = b.ingest(1)
    r1 = b.gate(s1, True)
    s2 = b.ingest(2)
    b.gate(s2, False)
    s3 = b.ingest(3)
    g = b.graph()
    assert [lineage.span_of(a) for a in lineage.training_window(g, s3, 3)] == [3, 1]
    assert lineage.drift_reference(g, s3).ref == r1.ref


def test_warm_start_is_the_newest_blessed_model_of_older_spans_and_the_baseline_never_the_candidate():
    b = Builder()
    s1 = b.ingest(1)
    b.gate(s1, True)
    m1 = b.train([s1])
    b.evaluate(m1, True)
    s2 = b.ingest(2)
    b.gate(s2, True)
    m2 = b.train([s2, s1], warm=m1)
    b.evaluate(m2, True, baseline=m1)
    m2b = b.train([s2, s1], warm=m1)  # a retrain of span 2, not blessed
    b.evaluate(m2b, False, baseline=m2)
    g = b.graph()
    # For span 2's retrain: trained only on older spans -> m1, not m2 (trained on span 2).
    assert lineage.warm_start_model(g, 2).ref == m1.ref
    assert lineage.warm_start_model(g, 3).ref == m2.ref
    assert lineage.warm_start_model(g, 1) is None
    # The baseline is the most recently blessed other than the candidate.
    assert lineage.baseline_model(g, m2b.uri).ref == m2.ref
    assert lineage.baseline_model(g, m2.uri).ref == m1.ref
    facts = lineage.model_facts(g, m2)
    assert facts["spans"] == [1, 2] and facts["warm_start_spans"] == [1] and facts["baseline_spans"] == [1]
    assert lineage.warm_start_ancestry(g, m2b) == [m1]


def test_a_rollback_is_served_and_becomes_the_baseline():
    b = Builder()
    s1 = b.ingest(1)
    b.gate(s1, True)
    m1 = b.train([s1])
    b.evaluate(m1, True)
    p1 = b.push(m1, "100")
    m2 = b.train([s1], warm=m1)
    b.evaluate(m2, True, baseline=m1)
    b.push(m2, "200")
    # The rollback: reads the earlier push and model, writes a Model (same files), a blessing
    # and a push.
    rolled = b.artifact("Model", m1.uri, rollback_of=m1.uri)
    blessing = b.artifact("ModelBlessing", m1.uri, blessed=1, rollback=1)
    again = b.artifact("PushedModel", "/serving/300", pushed=1, pushed_version="300")
    b.execution(lineage.ROLLBACK, inputs=[p1, m1], outputs=[rolled, blessing, again])
    g = b.graph()
    assert lineage.served(g).ref == again.ref and lineage.pushed_version(lineage.served(g)) == "300"
    assert lineage.model_of(g, again).ref == m1.ref
    assert lineage.original_model(g, rolled).ref == m1.ref
    assert lineage.examples_trained_on(g, rolled) == [s1]
    assert lineage.baseline_model(g, "/model/new").uri == m1.uri
    assert lineage.models_at(g, m1.uri) == [m1]  # the Trainer's, not the rollback's copy


def test_the_newest_tuning_is_the_tuners_only():
    b = Builder()
    assert lineage.latest_tuning(b.graph()) is None
    first = b.artifact("HyperParameters", "/t/1")
    b.execution(lineage.TUNER, outputs=[first])
    b.artifact("HyperParameters", "/elsewhere/2")  # not written by the Tuner
    second = b.artifact("HyperParameters", "/t/3")
    b.execution(lineage.TUNER, outputs=[second])
    assert lineage.latest_tuning(b.graph()).ref == second.ref
