"""A run fits Step Functions' 25,000-event execution history, however long the deploy polling lasts.

Step Functions fails an execution whose history reaches 25,000 events (``States.Runtime``, "The execution
reached the maximum number of history events (25000).", Step Functions quotas, "Maximum execution history
size"). No Catch catches it: the run ends without MarkDeployFailed. The pipeline has two loops: the
deploy poll (WaitForEndpoint -> DescribeEndpoint -> EndpointReady, up to ``MaxPolls`` times), and the
regate (Regate -> ShouldTune ... DeployModel -> DeployAction -> MarkRegated -> Regate: the live model changed
since the gate, the run trains again, at most ``MAX_REGATES`` times - the deploy step fails the run past
it). The poll loop starts only after an update began, and a regate happens only before one, so the poll
loop runs in the last attempt only. The template bounds ``MaxPolls`` and this test shows that the worst
case - every state run once, the regate cycle ``MAX_REGATES`` more times, the poll loop ``MaxValue``
times, and every Retry of every state used to the full - stays under the quota.

Events per state as Step Functions records them (``GetExecutionHistory``): Task = Entered, Scheduled,
Started, Succeeded/Failed, Exited (5) plus 3 per retried attempt (Scheduled, Started, Failed); Wait, Choice,
Pass, Succeed, Fail = Entered + Exited (2); the execution itself = ExecutionStarted + its end (2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sagepipe.twin.cloudformation.template import load_template
from sagepipe_core.steps import MAX_REGATES

REPO = Path(__file__).resolve().parents[2]
ASL = json.loads((REPO / "statemachines" / "training_pipeline.asl.json").read_text())
HISTORY_QUOTA = 25_000
POLL_LOOP = ("WaitForEndpoint", "DescribeEndpoint", "EndpointReady")
BACK_EDGES = {("EndpointReady", "WaitForEndpoint"), ("Regate", "ShouldTune")}


def _events(state: dict[str, Any]) -> int:
    """The most history events one visit of ``state`` can add (every Retry used to its MaxAttempts)."""
    if state["Type"] != "Task":
        return 2
    retries = sum(int(r.get("MaxAttempts", 3)) for r in state.get("Retry", []))
    return 5 + 3 * retries


def _successors(state: dict[str, Any]) -> list[str]:
    nxt = [state["Next"]] if "Next" in state else []
    nxt += [c["Next"] for c in state.get("Choices", [])]
    nxt += [state["Default"]] if "Default" in state else []
    nxt += [c["Next"] for c in state.get("Catch", [])]
    return nxt


def _acyclic_graph() -> dict[str, list[str]]:
    return {name: [n for n in _successors(s) if (name, n) not in BACK_EDGES] for name, s in ASL["States"].items()}


def _reaching(graph: dict[str, list[str]], start: str, goal: str) -> set[str]:
    """States on some path from ``start`` to ``goal`` in the acyclic ``graph`` (both included)."""
    memo: dict[str, bool] = {}

    def reaches(node: str) -> bool:
        if node not in memo:
            memo[node] = node == goal or any(reaches(n) for n in graph[node])
        return memo[node]

    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node in seen or not reaches(node):
            continue
        seen.add(node)
        todo.extend(graph[node])
    return seen


def test_the_poll_loop_and_the_regate_are_the_only_cycles() -> None:
    """Without the two back edges the state graph is acyclic, so every other state runs at most once per
    attempt (the bound below counts each once, and the regate cycle's once per regate)."""
    states = ASL["States"]
    graph = _acyclic_graph()
    for src, dst in BACK_EDGES:
        assert dst in _successors(states[src]), (src, dst)
    seen: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str) -> None:
        assert seen.get(node) != 1, f"another cycle through {node}: its events are not bounded"
        if node in seen:
            return
        seen[node] = 1
        for n in graph[node]:
            visit(n)
        seen[node] = 2

    visit(ASL["StartAt"])
    assert set(seen) == set(states)
    cycle = _reaching(graph, "ShouldTune", "Regate")
    assert not cycle & set(POLL_LOOP), "the poll loop would repeat per regate"
    assert {"TrainModel", "TuneModel", "RegisterModel", "DeployModel", "MarkRegated"} <= cycle


def test_max_polls_keeps_the_worst_case_history_under_the_quota() -> None:
    params = load_template(REPO / "template.yaml")["Parameters"]
    max_polls = params["MaxPolls"].get("MaxValue")
    assert max_polls is not None, "MaxPolls has no MaxValue: a large value runs the execution into the history quota"
    states = ASL["States"]
    per_poll = sum(_events(states[name]) for name in POLL_LOOP)
    once = sum(_events(s) for name, s in states.items() if name not in POLL_LOOP)
    per_regate = sum(_events(states[name]) for name in _reaching(_acyclic_graph(), "ShouldTune", "Regate"))
    worst = 2 + once + MAX_REGATES * per_regate + int(max_polls) * per_poll
    assert worst < HISTORY_QUOTA, (
        f"{worst} events ({once} + {MAX_REGATES} regates x {per_regate} + {max_polls} polls x {per_poll})"
        f" >= {HISTORY_QUOTA}"
    )
