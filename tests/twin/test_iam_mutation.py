"""Proof by mutation: every action and every resource of every role in template.yaml is needed.

For each Allow statement of each role the deployer created, one mutation at a time: remove one action
(the whole statement when it is the only one), or narrow one resource to an ARN no request matches. A
mutation is caught when some request that the twin tests of this session really made as that role (and
that the twin allowed) is denied under the mutated policies, by the same evaluator that enforces IAM in
the twin: with that grant missing, that call fails with AccessDenied in the flow that made it
(tests/twin/test_iam.py shows it end to end for two such grants). The recording is the whole twin
session's (conftest turns it on), so this module runs last; run on its own it reports the grants the
flows it ran did not use, and fails.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sagepipe.twin import iam

from .conftest import record

pytestmark = pytest.mark.twin

NARROWED = "-narrowed-by-mutation"

#: Grants no twin flow exercises, each with why it stays in template.yaml: (logical id, statement, how the
#: change starts) → reason. The test fails if one of them becomes caught (the justification is then stale).
JUSTIFIED: dict[tuple[str, str, str], str] = {}  # none today: every grant and resource is needed by some flow


def _justification(m: Mutation) -> tuple[str, str, str] | None:
    return next((k for k in JUSTIFIED if k[:2] == (m.logical_id, m.statement) and m.change.startswith(k[2])), None)


@dataclass(frozen=True)
class Mutation:
    role_arn: str
    logical_id: str
    statement: str  # Sid, or policy/statement index
    change: str
    documents: tuple[dict[str, Any], ...]


def _narrow(resource: str) -> str:
    if resource == "*":
        return f"arn:aws:mutated:us-east-1:{iam.ACCOUNT_ID}:nothing{NARROWED}"
    return resource + NARROWED


def _replace(
    documents: tuple[dict[str, Any], ...], d: int, s: int, new: dict[str, Any] | None
) -> tuple[dict[str, Any], ...]:
    """``documents`` with statement ``s`` of document ``d`` replaced by ``new`` (removed when None)."""
    docs = copy.deepcopy(list(documents))
    kept = list(iam.statements(docs[d]))
    kept[s : s + 1] = [new] if new is not None else []
    docs[d] = {**docs[d], "Statement": kept}
    return tuple(docs)


def mutations(deployed: dict[str, iam.DeployedRole]) -> Iterator[Mutation]:
    """Every single-grant removal and single-resource narrowing of every role's Allow statements."""
    for arn, role in sorted(deployed.items()):
        for d, document in enumerate(role.documents):
            for s, statement in enumerate(iam.statements(document)):
                if statement.get("Effect") != "Allow":
                    continue
                label = statement.get("Sid") or f"policy{d}[{s}]"

                actions = iam._as_list(statement["Action"])
                for action in actions:
                    rest = [a for a in actions if a != action]
                    new = {**statement, "Action": rest} if rest else None
                    yield Mutation(
                        arn, role.logical_id, label, f"without {action}", _replace(role.documents, d, s, new)
                    )
                resources = iam._as_list(statement["Resource"])
                for i, resource in enumerate(resources):
                    narrowed = [*resources[:i], _narrow(resource), *resources[i + 1 :]]
                    yield Mutation(
                        arn,
                        role.logical_id,
                        label,
                        f"{resource} narrowed",
                        _replace(role.documents, d, s, {**statement, "Resource": narrowed}),
                    )


def test_every_grant_and_resource_of_every_role_is_needed_by_some_flow() -> None:
    requests: dict[str, set[iam.Check]] = defaultdict(set)
    for entry in iam.RECORDER.entries:
        if entry.allowed:
            requests[entry.role_arn].add(entry.check)
    assert iam.DEPLOYED and requests, "no twin ran in this session: nothing was recorded"
    for arn in requests:  # the recording holds only template roles
        assert arn in iam.DEPLOYED, arn
    caught, missed = [], []
    for m in mutations(iam.DEPLOYED):
        denied = next(
            (c for c in sorted(requests[m.role_arn], key=str) if not iam.evaluate(m.documents, c).allowed), None
        )
        (caught if denied else missed).append((m, denied))
    total = len(caught) + len(missed)
    unjustified = [m for m, _ in missed if _justification(m) is None]
    justified = len(missed) - len(unjustified)
    print(f"\nIAM mutations caught: {len(caught)} of {total} ({len(missed)} not caught, {justified} of them justified)")
    record("IAM mutations (one grant removed / one resource narrowed)", f"{len(caught)} of {total} caught")
    for m, denied in caught:
        assert denied is not None
        print(f"  caught  {m.logical_id}/{m.statement}: {m.change} -> denies {denied.action} on {denied.resource}")
    for m, _ in missed:
        key = _justification(m)
        print(f"  missed  {m.logical_id}/{m.statement}: {m.change} ({JUSTIFIED[key] if key else 'NOT JUSTIFIED'})")
    assert total > 0
    stale = set(JUSTIFIED) - {_justification(m) for m, _ in missed}
    assert not stale, f"justified as unused, but a flow needs them now (drop the justification): {sorted(stale)}"
    assert not unjustified, f"{len(unjustified)} of {total} grants/resources no flow needs: " + "; ".join(
        f"{m.logical_id}/{m.statement}: {m.change}" for m in unjustified
    )


def test_mutations_cover_every_role_action_and_resource() -> None:
    """The mutation set itself: one per action and one per resource entry of each Allow statement."""
    documents = (
        {
            "Statement": [
                {
                    "Sid": "A",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": ["arn:aws:s3:::b/*", "*"],
                }
            ]
        },
        {"Statement": {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}},
    )
    found = list(mutations({"arn:aws:iam::1:role/r": iam.DeployedRole("R", documents)}))
    assert [m.change for m in found] == [
        "without s3:GetObject",
        "without s3:PutObject",
        "arn:aws:s3:::b/* narrowed",
        "* narrowed",
    ]
    get = iam.Check("s3:GetObject", "arn:aws:s3:::b/k")
    assert iam.evaluate(documents, get).allowed
    assert [iam.evaluate(m.documents, get).allowed for m in found] == [False, True, True, True]
    assert not iam.evaluate(found[3].documents, iam.Check("s3:GetObject", "arn:aws:s3:::other/k")).allowed
