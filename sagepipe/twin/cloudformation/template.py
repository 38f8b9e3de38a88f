"""Reading ``template.yaml`` for the twin: CloudFormation YAML short tags, SAM ``Globals``, parameters,
and the intrinsic functions the template uses (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
``Fn::Select``, ``Fn::Split``, ``Fn::FindInMap``, ``Fn::If``; any other is reported if met).

The twin parses the template itself rather than deploying through moto's CloudFormation, which cannot
host a SAM app (see ``shared/design/local-twin-facts.md``).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import yaml

ACCOUNT_ID = "123456789012"
NO_VALUE = object()  # Ref AWS::NoValue: the property or list item is removed


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns ``!Ref x`` into ``{"Ref": x}``, ``!GetAtt a.b`` into ``{"Fn::GetAtt": [a, b]}``, etc."""


def _tag(tag: str) -> Callable[[yaml.Loader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(cast(yaml.MappingNode, node), deep=True)  # the third node kind
        return {"Ref": value} if tag == "Ref" else {f"Fn::{tag}": value}

    return construct


for _name in (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "Base64",
    "GetAZs",
    "ImportValue",
    "Condition",
    "Cidr",
):
    _CfnLoader.add_constructor(f"!{_name}", _tag(_name))


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template (short tags become long-form dicts)."""
    template: dict[str, Any] = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template


def _merge_globals(glob: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    """SAM Globals semantics: maps merge (resource wins), lists concatenate (globals first), scalars: resource wins."""
    out = copy.deepcopy(glob)
    for key, value in props.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge_globals(out[key], value)
        elif key in out and isinstance(out[key], list) and isinstance(value, list):
            out[key] = out[key] + value
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Stack:
    """A parsed template plus the twin's physical ids and attributes for each deployed resource."""

    name: str
    template: dict[str, Any]
    root: Path
    region: str = "us-east-1"
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)  # logical id -> Ref value
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id -> {Attr: value}

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """``Resources`` with SAM ``Globals`` applied to functions and APIs."""
        glob = self.template.get("Globals", {})
        out = {}
        for lid, res in self.template["Resources"].items():
            res = copy.deepcopy(res)
            kind = {"AWS::Serverless::Function": "Function", "AWS::Serverless::Api": "Api"}.get(res["Type"])
            if kind and kind in glob:
                res["Properties"] = _merge_globals(glob[kind], res.get("Properties", {}))
            out[lid] = res
        return out

    def parameter(self, name: str) -> str:
        """Parameter value: override, else default. Raises KeyError if neither."""
        if name in self.parameter_overrides:
            return self.parameter_overrides[name]
        return str(self.template["Parameters"][name]["Default"])

    def physical_name(self, logical_id: str, max_len: int = 63, lower: bool = False) -> str:
        """A CloudFormation-like generated name: ``<stack>-<LogicalId>-<hash>`` (deterministic)."""
        digest = hashlib.sha256(f"{self.name}/{logical_id}".encode()).hexdigest()[:8]
        name = f"{self.name}-{logical_id}"[: max_len - 9] + f"-{digest}"
        return name.lower() if lower else name

    def pseudo(self, name: str) -> str | object | None:
        """Pseudo parameters (``AWS::Region`` ...): a str, :data:`NO_VALUE` for ``AWS::NoValue``, else None."""
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.name}/twin",
            "AWS::NoValue": NO_VALUE,
        }.get(name)

    def ref(self, name: str) -> Any:
        """Resolve ``Ref name``. Raises KeyError when the target is not deployed yet."""
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.template.get("Parameters", {}):
            return self.parameter(name)
        return self.physical[name]

    def get_att(self, logical_id: str, attr: str) -> str:
        """Resolve ``Fn::GetAtt``. Raises KeyError when unknown."""
        return self.attributes[logical_id][attr]

    def condition(self, name: str) -> bool:
        """Evaluate ``Conditions[name]`` (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition)."""
        return bool(self._condition_value(self.template.get("Conditions", {})[name]))

    def _condition_value(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((key, arg),) = expr.items()
            if key == "Fn::Equals":
                a, b = (self._condition_value(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._condition_value(arg[0])
            if key == "Fn::And":
                return all(self._condition_value(x) for x in arg)
            if key == "Fn::Or":
                return any(self._condition_value(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
        return self.resolve(expr)

    def enabled(self, logical_id: str) -> bool:
        """False when the resource has a ``Condition`` that evaluates false (it is not created)."""
        cond = self.template["Resources"][logical_id].get("Condition")
        return cond is None or self.condition(cond)

    def resolve(self, value: Any) -> Any:
        """Resolve intrinsic functions recursively (``AWS::NoValue`` entries are dropped).

        Raises NotImplementedError for an intrinsic the twin does not support, KeyError for an unknown
        reference or mapping key (CloudFormation fails the stack for both)."""
        if isinstance(value, list):
            return [r for r in (self.resolve(v) for v in value) if r is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._INTRINSICS.get(key)
            if handler is not None:
                return handler(self, arg)
            if key.startswith("Fn::"):
                raise NotImplementedError(f"intrinsic {key} is not supported by the twin")
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    def _if(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _get_att(self, arg: Any) -> str:
        parts = arg if isinstance(arg, list) else arg.split(".", 1)
        return self.get_att(parts[0], parts[1])

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def sub(m: re.Match[str]) -> str:
            token = m.group(1)
            if token in extra:
                return str(extra[token])
            if "." in token and not token.startswith("AWS::"):
                lid, attr = token.split(".", 1)
                return str(self.get_att(lid, attr))
            return str(self.ref(token))

        return re.sub(r"\$\{([^}!][^}]*)\}", sub, text)

    def _join(self, arg: list[Any]) -> str:
        return str(arg[0]).join(str(self.resolve(v)) for v in arg[1])

    def _select(self, arg: list[Any]) -> Any:
        return self.resolve(arg[1])[int(self.resolve(arg[0]))]

    def _split(self, arg: list[Any]) -> list[str]:
        return str(self.resolve(arg[1])).split(str(arg[0]))

    def _find_in_map(self, arg: list[Any]) -> Any:
        name, top, second = (str(self.resolve(a)) for a in arg[:3])
        try:
            return self.template["Mappings"][name][top][second]
        except KeyError as exc:  # CloudFormation fails the stack the same way
            raise KeyError(f"Fn::FindInMap: mapping {name} has no {top}/{second}") from exc

    _INTRINSICS: ClassVar[dict[str, Callable[[Stack, Any], Any]]] = {
        "Ref": lambda self, arg: self.ref(arg),
        "Fn::If": _if,
        "Fn::GetAtt": _get_att,
        "Fn::Sub": _sub,
        "Fn::Join": _join,
        "Fn::Select": _select,
        "Fn::Split": _split,
        "Fn::FindInMap": _find_in_map,
    }

    def dependencies(self, value: Any) -> set[str]:
        """Logical ids that ``value`` refers to (Ref, GetAtt, Sub)."""
        deps: set[str] = set()
        resources = self.template["Resources"]
        if isinstance(value, list):
            for v in value:
                deps |= self.dependencies(v)
        elif isinstance(value, dict):
            for key, arg in value.items():
                if key == "Ref" and isinstance(arg, str) and arg.split(".", 1)[0] in resources:
                    deps.add(arg.split(".", 1)[0])  # SAM's "Function.Version" / "Function.Alias" refs too
                elif key == "Fn::GetAtt":
                    lid = arg[0] if isinstance(arg, list) else arg.split(".", 1)[0]
                    if lid in resources:
                        deps.add(lid)
                elif key == "Fn::Sub":
                    text = arg if isinstance(arg, str) else arg[0]
                    for token in re.findall(r"\$\{([^}!][^}]*)\}", text):
                        lid = token.split(".", 1)[0]
                        if lid in resources:
                            deps.add(lid)
                    if not isinstance(arg, str):
                        deps |= self.dependencies(arg[1])
                else:
                    deps |= self.dependencies(arg)
        return deps

    def deploy_order(self) -> list[str]:
        """Logical ids in dependency order (Kahn's algorithm; ties by template order).

        A function's ``Events`` that reference other resources (rules, APIs) are edges too.
        Raises ValueError on a cycle.
        """
        resources = self.resources
        deps = {lid: self.dependencies(res) - {lid} for lid, res in resources.items()}
        for lid, res in resources.items():
            deps[lid] |= {d for d in res.get("DependsOn", []) if isinstance(res.get("DependsOn"), list)}
        order: list[str] = []
        remaining = dict(deps)
        while remaining:
            ready = [lid for lid, d in remaining.items() if not (d - set(order))]
            if not ready:
                raise ValueError(f"dependency cycle among {sorted(remaining)}")
            for lid in ready:
                order.append(lid)
                del remaining[lid]
        return order
