"""Issue 11 items 3-6 end to end on the twin: a CSV as real exports are (an identifier column, ``?`` and
``N/A`` in a numeric column, numbers with thousands separators) trains and deploys, and the deployed API
takes a new customer's ordinary numbers, imputes a missing feature with a warning, and answers per record.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import requests

from sagepipe import client
from sagepipe.client import Target

from .conftest import churn_config, churn_rows, wait_for_key

pytestmark = pytest.mark.twin

MODEL = "contract"


def _export(n: int) -> tuple[bytes, list[dict[str, str]]]:
    """Churn rows ``[0:n]`` re-exported: ``customer_id`` first, ``?`` / ``N/A`` in ``account_length``, and
    ``day_cents`` (``total_day_charge`` in cents) written with thousands separators ("4,507.0", quoted)."""
    header, rows = churn_rows(0, n)
    records = list(csv.DictReader(io.StringIO("\n".join([header, *rows]))))
    out = io.StringIO()
    names = ["customer_id", *records[0], "day_cents"]
    writer = csv.DictWriter(out, names, lineterminator="\n")
    writer.writeheader()
    for i, rec in enumerate(records):
        rec = dict(rec)
        if i % 500 == 7:
            rec["account_length"] = "?" if i % 1000 == 7 else "N/A"
        cents = round(float(rec["total_day_charge"]) * 100)
        writer.writerow({"customer_id": f"C{100900 + 17 * i}", **rec, "day_cents": f"{cents:,}.0"})
    return out.getvalue().encode(), records


def _api(target: Target, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"x-api-key": target.api_key} if target.api_key else {}
    return requests.request(method, f"{target.api_url}{path}", headers=headers, timeout=30, **kwargs)


def _instance(rec: dict[str, str], customer: str) -> dict[str, Any]:
    """A new customer's record as a client sends it: ordinary JSON numbers, its own id."""
    out: dict[str, Any] = {"customer_id": customer}
    for k, v in rec.items():
        if k == "churn":
            continue
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    out["day_cents"] = round(float(rec["total_day_charge"]) * 100)
    return out


@pytest.fixture(scope="module")
def deployed(twin: Any, target: Target, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("contract")
    body, _ = _export(2500)
    path = tmp / "export.csv"
    path.write_bytes(body)
    key = client.upload(target, path, MODEL, churn_config(tmp, threshold=0.7))
    [desc] = wait_for_key(target, key, timeout_s=400)
    return {"desc": desc, "output": json.loads(desc.get("output") or "{}")}


def test_a_real_export_trains_with_identifiers_excluded_and_numbers_kept_numeric(
    deployed: dict[str, Any], target: Target
) -> None:
    assert deployed["desc"]["status"] == "SUCCEEDED", deployed["desc"].get("cause")
    run = deployed["output"]["run"]
    assert run["dataset"]["excluded"] == {"customer_id": "unique_text"}
    assert json.loads(run["training"]["HyperParameters"]["exclude_columns"]) == {"customer_id": "unique_text"}
    resp = _api(target, "GET", f"/models/{MODEL}")
    assert resp.status_code == 200, resp.text
    schema = resp.json()["schema"]
    types = {f["name"]: f["type"] for f in schema["features"]}
    assert "customer_id" not in schema["feature_order"]
    assert types["account_length"] == "numeric" and types["day_cents"] == "numeric"
    features = {f["name"]: f for f in schema["features"]}
    assert features["account_length"]["nullable"] is True  # "?" and "N/A" were read as missing
    assert features["day_cents"]["max"] > 1000  # "4,507.0" was read as 4507


def test_the_deployed_api_takes_new_customers_missing_values_and_per_record_batches(
    deployed: dict[str, Any], target: Target
) -> None:
    assert deployed["desc"]["status"] == "SUCCEEDED", deployed["desc"].get("cause")
    _, records = _export(2520)
    fresh = [_instance(r, f"NEW{i}") for i, r in enumerate(records[2500:])]  # never uploaded
    path = f"/models/{MODEL}/predictions"
    resp = _api(target, "POST", path, json={"instances": fresh})
    assert resp.status_code == 200, resp.text  # new customer ids and plain numbers: no unseen_category / 422
    assert len(resp.json()["predictions"]) == 20 and "warnings" not in resp.json()
    missing = [dict(r) for r in fresh]
    del missing[3]["total_eve_minutes"]  # training never saw it missing: imputed, with a warning
    resp = _api(target, "POST", path, json={"instances": missing})
    assert resp.status_code == 200, resp.text
    assert resp.json()["warnings"] == [{"index": 3, "fields": ["total_eve_minutes"], "code": "missing_feature_imputed"}]
    bad = [dict(r) for r in fresh]
    bad[5]["account_length"] = "abc"
    resp = _api(target, "POST", path, json={"instances": bad})
    assert resp.status_code == 422 and resp.json()["error"]["errors"][0]["index"] == 5
    resp = _api(target, "POST", path, params={"per_record": "true"}, json={"instances": bad})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert [i for i, p in enumerate(doc["predictions"]) if p is None] == [5]
    assert doc["error_count"] == 1 and doc["errors"][0]["field"] == "account_length"
    assert all(set(p["probabilities"]) == {"no", "yes"} for p in doc["predictions"] if p is not None)
    resp = _api(target, "POST", path, params={"per_record": "maybe"}, json={"instances": bad})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_parameter"
