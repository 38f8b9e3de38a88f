"""Run statelint on every state machine in template.yaml with its DefinitionSubstitutions filled in.

statelint cannot read ``${Placeholders}``; each one is replaced by a well-formed value of its kind
(an ARN for ``*Arn``, an image URI for ``*Image``, a name otherwise). Exit code: statelint's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sagepipe.twin.cloudformation.template import load_template

ROOT = Path(__file__).resolve().parents[1]


def placeholder(name: str) -> str:
    if name.endswith("FunctionArn"):
        return f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    if name.endswith("RoleArn"):
        return f"arn:aws:iam::123456789012:role/{name}"
    if name.endswith("Image"):
        return "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    return name


def main() -> int:
    template = load_template(ROOT / "template.yaml")
    status = 0
    for lid, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = res["Properties"]
        text = (ROOT / props["DefinitionUri"]).read_text()
        for key in props.get("DefinitionSubstitutions", {}):
            text = text.replace("${" + key + "}", placeholder(key))
        if "${" in text:
            print(f"{lid}: unsubstituted placeholder left in {props['DefinitionUri']}", file=sys.stderr)
            status = 1
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(json.loads(text), fh)
        rc = subprocess.call([str(Path(sys.executable).with_name("statelint")), fh.name])
        print(f"statelint {props['DefinitionUri']} ({lid}): {'ok' if rc == 0 else 'FAILED'}")
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main())
