"""The inference API handler (``functions/predict/app.py`` + ``sagepipe_core.predict``/``schema``) with REST
v1 proxy events: every error class with its exact status and JSON shape, schema validation against the live
model version (moto S3 + SageMaker), schema drift, CORS, logs, and the OpenAPI contract vs the template."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from tests.conftest import load_event
from tests.unit.predict_helpers import churn_record, churn_schema, deploy_version

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
REQUEST_ID = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@pytest.fixture()
def api(aws, monkeypatch, load_handler):
    """The predict handler with churn version ``v1`` live in moto (cache TTL 0 so every call re-checks)."""
    for k, v in {
        "RESOURCE_PREFIX": "sagepipe",
        "MAX_BATCH_SIZE": "100",
        "MODEL_CACHE_TTL_SECONDS": "0",
        "CORS_ALLOW_ORIGINS": "https://app.example.com,https://admin.example.com",
    }.items():
        monkeypatch.setenv(k, v)
    deploy_version(boto3.client("s3"), boto3.client("sagemaker"), "churn-v1", churn_schema())
    return load_handler("predict")


def event(
    body=None,
    content_type="application/json",
    model="churn",
    method="POST",
    resource=None,
    path=None,
    b64=False,
    headers=None,
    query=None,
):
    """A REST v1 proxy event derived from ``events/predict_rest.json``."""
    ev = load_event("predict_rest.json")
    ev["httpMethod"] = ev["requestContext"]["httpMethod"] = method
    ev["resource"] = ev["requestContext"]["resourcePath"] = resource or "/models/{model}/predictions"
    ev["path"] = path or f"/models/{model}/predictions"
    ev["requestContext"]["path"] = "/v1" + ev["path"]
    ev["pathParameters"] = {"model": model} if "{model}" in ev["resource"] else None
    ev["headers"].pop("Content-Type")
    ev["multiValueHeaders"].pop("Content-Type")
    if content_type is not None:
        ev["headers"]["Content-Type"] = content_type
        ev["multiValueHeaders"]["Content-Type"] = [content_type]
    for k, v in (headers or {}).items():
        ev["headers"][k] = v
        ev["multiValueHeaders"][k] = [v]
    if body is not None:
        ev["body"] = body if isinstance(body, str) else json.dumps(body)
    if query is not None:
        ev["queryStringParameters"] = query
        ev["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    if b64 and ev["body"] is not None:
        ev["body"] = base64.b64encode(ev["body"].encode()).decode()
        ev["isBase64Encoded"] = True
    return ev


def call(app, ev, ctx):
    resp = app.lambda_handler(ev, ctx)
    hdrs = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
    for k, v in (resp.get("multiValueHeaders") or {}).items():
        hdrs.setdefault(k.lower(), v[0] if isinstance(v, list) else v)
    return resp["statusCode"], (json.loads(resp["body"]) if resp.get("body") else None), hdrs


def ok_response(stub, n=1, expect_body=ANY):
    preds = [{"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}] * n
    payload = json.dumps({"predictions": preds}).encode()
    stub.add_response(
        "invoke_endpoint",
        {
            "Body": StreamingBody(io.BytesIO(payload), len(payload)),
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
        },
        {
            "EndpointName": "sagepipe-churn",
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": expect_body,
            "InferenceId": REQUEST_ID,  # the API's request id: data capture's eventMetadata.inferenceId
        },
    )


def assert_error(status, body, want_status, code):
    assert status == want_status, body
    assert set(body) == {"error"} and body["error"]["code"] == code and isinstance(body["error"]["message"], str), body


# ------------------------------------------------------------------------------------------ success
def test_sample_event_predicts_with_version_and_request_id(api, lambda_context):
    ev = load_event("predict_rest.json")
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 2)
        status, body, hdrs = call(api, ev, lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200, body
    assert body["predictions"][0] == {"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}
    assert (body["model"], body["version"], body["endpoint"], body["endpoint_config"], body["variant"]) == (
        "churn",
        "churn-v1",
        "sagepipe-churn",
        "churn-v1",
        "AllTraffic",
    )
    assert body["request_id"] == REQUEST_ID and hdrs["content-type"] == "application/json"


def test_body_sent_to_endpoint_is_normalised_json(api, lambda_context):
    rec = {k: (str(v) if isinstance(v, float) else v) for k, v in churn_record(0).items()}  # numbers as strings
    rec["churn"] = "no"  # the target column is tolerated and dropped
    expected = json.dumps({"instances": [churn_record(0)]}, separators=(",", ":")).encode()
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 1, expected)
        status, body, _ = call(api, event({"instances": [rec]}), lambda_context)
    assert status == 200, body


def test_base64_body_is_decoded(api, lambda_context):
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        status, body, _ = call(api, event({"instances": [churn_record(1)]}, b64=True), lambda_context)
    assert status == 200, body


def test_invalid_base64_is_400(api, lambda_context):
    ev = event({"instances": [churn_record(1)]})
    ev["body"], ev["isBase64Encoded"] = "%%%not base64", True
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, ev, lambda_context)
    assert_error(status, body, 400, "invalid_base64")


@pytest.mark.parametrize("with_header", [True, False])
def test_csv_body_with_or_without_header(api, lambda_context, with_header):
    lines = (REPO / "examples" / "data" / "churn.csv").read_text().splitlines()
    header = lines[0].rsplit(",", 1)[0]
    rows = [r.rsplit(",", 1)[0] for r in lines[1:4]]
    body = "\n".join(([header] if with_header else []) + rows) + "\n"
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 3)
        status, out, _ = call(api, event(body, "text/csv; charset=utf-8"), lambda_context)
    assert status == 200 and len(out["predictions"]) == 3, out


@pytest.mark.parametrize("name", ["content-type", "CONTENT-TYPE", "Content-type"])
def test_header_lookup_ignores_case(api, lambda_context, name):
    ev = event({"instances": [churn_record(0)]}, content_type=None, headers={name: "application/json"})
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        status, body, _ = call(api, ev, lambda_context)
    assert status == 200, body


# ------------------------------------------------------------------------------- request errors
@pytest.mark.parametrize("ct", ["text/plain", "application/xml", None, ""])
def test_wrong_or_missing_content_type_415(api, lambda_context, ct):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": [churn_record(0)]}, ct), lambda_context)
    assert_error(status, body, 415, "unsupported_media_type")


@pytest.mark.parametrize("coding", ["gzip", "GZIP", "deflate", "br", "identity, gzip"])
def test_a_compressed_body_is_415_naming_the_encoding(api, lambda_context, coding):
    """A gzip body was "400 body is not valid UTF-8"; the API takes uncompressed bodies and says so."""
    import gzip

    ev = event(headers={"Content-Encoding": coding})
    ev["body"] = base64.b64encode(gzip.compress(json.dumps({"instances": [churn_record(0)]}).encode())).decode()
    ev["isBase64Encoded"] = True
    with Stubber(api.RUNTIME):  # no AWS call
        status, body, headers = call(api, ev, lambda_context)
    assert_error(status, body, 415, "unsupported_content_encoding")
    assert coding.split(",")[-1].strip() in body["error"]["message"] and "uncompressed" in body["error"]["message"]


@pytest.mark.parametrize("coding", ["identity", ""])
def test_an_identity_content_encoding_is_accepted(api, lambda_context, coding):
    ev = event({"instances": [churn_record(0)]}, headers={"Content-Encoding": coding})
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        status, body, _ = call(api, ev, lambda_context)
    assert status == 200, body


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_body_400(api, lambda_context, raw):
    ev = event()
    ev["body"] = raw
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, ev, lambda_context)
    assert_error(status, body, 400, "empty_body")


@pytest.mark.parametrize(
    "raw, code",
    [
        ('{"instances": [', "malformed_json"),
        ("{'a': 1}", "malformed_json"),
        ('{"rows": []}', "missing_instances"),
        ('{"instances": []}', "missing_instances"),
        ('{"instances": {}}', "missing_instances"),
        ("[1, 2]", "missing_instances"),
        ("null", "missing_instances"),
    ],
)
def test_malformed_json_or_missing_key_400(api, lambda_context, raw, code):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event(raw), lambda_context)
    assert_error(status, body, 400, code)


def test_body_over_6mb_413(api, lambda_context):
    big = json.dumps({"instances": [{"state": "KS", "pad": "x" * (6 * 1024 * 1024)}]})
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event(big), lambda_context)
    assert_error(status, body, 413, "payload_too_large")


def test_batch_over_limit_400(api, lambda_context):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": [churn_record(0)] * 101}), lambda_context)
    assert_error(status, body, 400, "too_many_instances")
    assert body["error"]["limit"] == 100


@pytest.mark.parametrize("model", ["bad.name", "-x", "a" * 41])
def test_invalid_model_name_400(api, lambda_context, model):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": [churn_record(0)]}, model=model), lambda_context)
    assert_error(status, body, 400, "invalid_model_name")


# -------------------------------------------------------------------------- schema validation (422)
def _violations(api, lambda_context, instances, unseen=None, monkeypatch=None, version="churn-v1"):
    with Stubber(api.RUNTIME):  # SageMaker must not be called
        status, body, _ = call(api, event(json.dumps({"instances": instances}, allow_nan=True)), lambda_context)
    assert_error(status, body, 422, "invalid_instances")
    assert body["error"]["version"] == version
    return [(e["index"], e["field"], e["code"]) for e in body["error"]["errors"]]


def test_unknown_feature_422(api, lambda_context):
    good, bad = churn_record(0), {**churn_record(1), "favourite_colour": "red"}
    assert _violations(api, lambda_context, [good, bad]) == [(1, "favourite_colour", "unknown_feature")]


def test_missing_feature_422_when_the_version_rejects_missing_features(api, lambda_context):
    # per-model config missing_features: reject, recorded by train.py in schema.json
    deploy_version(
        boto3.client("s3"),
        boto3.client("sagemaker"),
        "churn-v2",
        {**churn_schema(), "missing_features": "reject"},
        create_bucket=False,
    )
    rec = churn_record(0)
    del rec["total_day_minutes"]
    nullable_missing = {**churn_record(1), "number_vmail_messages": None}  # nullable in the schema
    assert _violations(api, lambda_context, [nullable_missing, rec], version="churn-v2") == [
        (1, "total_day_minutes", "missing_feature")
    ]


def _records_sent(stub_body: list[bytes]) -> list[dict]:
    return json.loads(stub_body[0])["instances"]


class _Capture:
    """``expect_body`` for the Stubber that keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def __eq__(self, other: object) -> bool:
        self.sent.append(other)  # type: ignore[arg-type]  # the Stubber compares the real Body with this
        return True


def test_missing_feature_is_imputed_with_a_warning_per_record_by_default(api, lambda_context):
    """Issue 11 item 6: the model imputes, so a record lacking a feature training never saw missing is
    accepted (a warning names the record and the fields); one such record does not fail 20."""
    records = [churn_record(i) for i in range(20)]
    del records[3]["total_day_minutes"]
    records[3]["state"] = None
    records[11]["total_eve_calls"] = "NA"
    sent = _Capture()
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 20, sent)
        status, body, _ = call(api, event({"instances": records}), lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200, body
    assert len(body["predictions"]) == 20
    assert body["warnings"] == [
        {"index": 3, "fields": ["state", "total_day_minutes"], "code": "missing_feature_imputed"},
        {"index": 11, "fields": ["total_eve_calls"], "code": "missing_feature_imputed"},
    ]
    assert body["warning_count"] == 2
    instances = _records_sent(sent.sent)
    assert instances[3]["total_day_minutes"] is None and instances[3]["state"] is None
    assert instances[11]["total_eve_calls"] is None and instances[0] == churn_record(0)


def test_per_record_results_keep_the_good_records(api, lambda_context):
    records = [churn_record(i) for i in range(20)]
    records[4]["account_length"] = "abc"
    records[7]["favourite_colour"] = "red"
    sent = _Capture()
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 18, sent)
        status, body, _ = call(api, event({"instances": records}, query={"per_record": "true"}), lambda_context)
        stub.assert_no_pending_responses()
    assert status == 200, body
    assert len(_records_sent(sent.sent)) == 18
    assert [i for i, p in enumerate(body["predictions"]) if p is None] == [4, 7]
    assert body["predictions"][0] == {"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}
    assert [(e["index"], e["field"], e["code"]) for e in body["errors"]] == [
        (4, "account_length", "wrong_type"),
        (7, "favourite_colour", "unknown_feature"),
    ]
    assert body["error_count"] == 2


def test_per_record_with_every_record_bad_calls_no_endpoint(api, lambda_context):
    with Stubber(api.RUNTIME):  # SageMaker must not be called
        status, body, _ = call(
            api, event({"instances": [{"nope": 1}, 7]}, query={"per_record": "true"}), lambda_context
        )
    assert status == 200, body
    assert body["predictions"] == [None, None] and body["error_count"] == 2
    assert {e["index"] for e in body["errors"]} == {0, 1}


def test_per_record_false_keeps_the_all_or_nothing_422(api, lambda_context):
    records = [churn_record(0), {**churn_record(1), "account_length": "abc"}]
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": records}, query={"per_record": "false"}), lambda_context)
    assert_error(status, body, 422, "invalid_instances")


@pytest.mark.parametrize("value", ["yes", "1", "True", ""])
def test_per_record_must_be_true_or_false(api, lambda_context, value):
    with Stubber(api.RUNTIME):
        status, body, _ = call(
            api, event({"instances": [churn_record(0)]}, query={"per_record": value}), lambda_context
        )
    assert_error(status, body, 400, "invalid_parameter")


@pytest.mark.parametrize(
    "field, value",
    [
        ("account_length", "abc"),
        ("account_length", True),
        ("account_length", [1]),
        ("state", {"a": 1}),
        ("international_plan", False),
    ],
)
def test_wrong_type_422(api, lambda_context, field, value):
    assert _violations(api, lambda_context, [{**churn_record(0), field: value}]) == [(0, field, "wrong_type")]


@pytest.mark.parametrize("value", ["inf", "-Infinity", float("nan"), float("inf")])
def test_non_finite_number_422(api, lambda_context, value):
    got = _violations(api, lambda_context, [{**churn_record(0), "total_day_minutes": value}])
    assert got == [(0, "total_day_minutes", "non_finite")]


def test_unseen_category_rejected_by_default(api, lambda_context):
    assert _violations(api, lambda_context, [{**churn_record(0), "state": "ZZ"}]) == [(0, "state", "unseen_category")]


def test_unseen_category_mapped_to_unknown_by_policy(api, lambda_context, monkeypatch, load_handler):
    monkeypatch.setenv("UNSEEN_CATEGORY_POLICY", "map_to_unknown")
    app = load_handler("predict")
    with Stubber(app.RUNTIME) as stub:
        ok_response(stub)
        status, body, _ = call(app, event({"instances": [{**churn_record(0), "state": "ZZ"}]}), lambda_context)
    assert status == 200 and body["warnings"] == [
        {"index": 0, "field": "state", "code": "unseen_category_mapped_to_unknown"}
    ]


def test_every_error_names_index_and_field_and_no_values(api, lambda_context):
    secret = "SECRET-VALUE-123"
    got = _violations(
        api, lambda_context, [churn_record(0), {**churn_record(1), "state": secret, "account_length": secret}]
    )
    assert sorted(got) == [(1, "account_length", "wrong_type"), (1, "state", "unseen_category")]


def test_csv_wrong_value_count_422(api, lambda_context):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event("KS,128\n", "text/csv"), lambda_context)
    assert_error(status, body, 422, "invalid_instances")
    assert body["error"]["errors"][0]["code"] == "wrong_value_count" and body["error"]["errors"][0]["index"] == 0


# ------------------------------------------------------------------------------ downstream errors
@pytest.mark.parametrize(
    "original, status, code",
    [
        (400, 422, "model_rejected_input"),
        (415, 422, "model_rejected_input"),
        (500, 502, "model_error"),
        (503, 502, "model_error"),
    ],
)
def test_model_error_mapping(api, lambda_context, original, status, code):
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error(
            "invoke_endpoint",
            "ModelError",
            "Received client error from model",
            424,
            modeled_fields={"OriginalStatusCode": original, "OriginalMessage": "column missing: plan"},
        )
        got, body, _ = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert_error(got, body, status, code)
    assert body["error"]["model_status"] == original
    if status == 422:
        assert body["error"]["message"] == "column missing: plan"  # the container's message


@pytest.mark.parametrize(
    "code, message, status, api_code, retry_after",
    [
        ("ThrottlingException", "Rate exceeded", 429, "throttled", "1"),
        ("ValidationError", "Endpoint sagepipe-churn of account 1 not found.", 503, "model_unavailable", "30"),
    ],
    ids=["throttled-429", "endpoint-gone-at-invoke-503"],
)
def test_runtime_errors_map_to_status_with_retry_after(
    api, lambda_context, code, message, status, api_code, retry_after
):
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error("invoke_endpoint", code, message, 400)
        got, body, hdrs = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert_error(got, body, status, api_code)
    assert hdrs["retry-after"] == retry_after


def test_endpoint_not_in_service_503_with_retry_after(api, lambda_context):
    with Stubber(api.LIVE.sm) as sm, Stubber(api.RUNTIME):
        sm.add_response(
            "describe_endpoint",
            {
                "EndpointName": "sagepipe-churn",
                "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/sagepipe-churn",
                "EndpointConfigName": "churn-v1",
                "EndpointStatus": "Creating",
                "CreationTime": "2024-01-01",
                "LastModifiedTime": "2024-01-01",
            },
        )
        status, body, hdrs = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert_error(status, body, 503, "model_unavailable")
    assert hdrs["retry-after"] == "30" and body["error"]["endpoint_status"] == "Creating"


def test_no_endpoint_for_model_404(api, lambda_context):
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": [churn_record(0)]}, model="nope"), lambda_context)
    assert_error(status, body, 404, "model_not_found")
    assert body["error"]["model"] == "nope"


def test_read_timeout_is_json_504(api, lambda_context, monkeypatch):
    def slow(**_):
        raise ReadTimeoutError(endpoint_url="https://runtime.sagemaker")

    monkeypatch.setattr(api.RUNTIME, "invoke_endpoint", slow)
    status, body, _ = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert_error(status, body, 504, "model_timeout")


def test_timeouts_nest_under_api_gateway_29s():
    """botocore read_timeout x attempts (+ connect) < Lambda Timeout < API Gateway's 29 s integration limit."""
    tpl = yaml.load((REPO / "template.yaml").read_text(), Loader=_Loader)
    timeout = tpl["Resources"]["PredictFunction"]["Properties"]["Timeout"]
    src = (REPO / "functions" / "predict" / "app.py").read_text()
    read = int(re.search(r"sagemaker-runtime.*read_timeout=(\d+)", src).group(1))
    attempts = int(re.search(r"sagemaker-runtime.*total_max_attempts\": (\d+)", src).group(1))
    assert read * attempts + 2 < timeout < 29


# ------------------------------------------------------------------------ GET routes, CORS, cache
def test_get_model_describes_live_version(api, lambda_context):
    ev = event(None, None, method="GET", resource="/models/{model}", path="/models/churn")
    ev["body"] = None
    status, body, _ = call(api, ev, lambda_context)
    assert status == 200, body
    assert body["version"] == "churn-v1" and body["endpoint_config"] == "churn-v1" and body["status"] == "InService"
    assert body["metrics"] == {"auc": 0.91} and body["deployed_at"] and body["labels"] == ["no", "yes"]
    assert body["schema"]["feature_order"][0] == "state" and body["request_id"] == REQUEST_ID
    assert body["schema_change"] is None  # its evaluation.json has no champion: nothing changed


def test_get_model_shows_the_schema_change_of_the_live_version(aws, monkeypatch, load_handler, lambda_context):
    """Issue 11 item 2: a version whose feature set differs from its predecessor's says how (GET /models/{model})."""
    monkeypatch.setenv("MODEL_CACHE_TTL_SECONDS", "0")
    diff = {"added": ["noise"], "removed": [], "retyped": [], "counts": {"added": 1, "removed": 0, "retyped": 0}}
    evaluation = {"metrics": {"test": {"auc": 0.9}}, "champion": {"status": "scored", "schema_diff": diff}}
    deploy_version(boto3.client("s3"), boto3.client("sagemaker"), "churn-v2", churn_schema(), evaluation=evaluation)
    app = load_handler("predict")
    ev = event(None, None, method="GET", resource="/models/{model}", path="/models/churn")
    ev["body"] = None
    status, body, _ = call(app, ev, lambda_context)
    assert status == 200, body
    assert body["schema_change"] == diff and body["version"] == "churn-v2"
    assert body["model_selection"] is None  # an evaluation.json from before candidates


def test_get_model_shows_the_chosen_candidate_and_the_runner_up(aws, monkeypatch, load_handler, lambda_context):
    """GET /models/{model} names the candidate the live version is (evaluation.json model_selection)."""
    from tests.unit.test_registry_approval import SELECTION

    monkeypatch.setenv("MODEL_CACHE_TTL_SECONDS", "0")
    evaluation = {"metrics": {"test": {"auc": 0.9}}, "model_selection": SELECTION}
    deploy_version(boto3.client("s3"), boto3.client("sagemaker"), "churn-v3", churn_schema(), evaluation=evaluation)
    ev = event(None, None, method="GET", resource="/models/{model}", path="/models/churn")
    ev["body"] = None
    status, body, _ = call(load_handler("predict"), ev, lambda_context)
    assert status == 200, body
    assert body["model_selection"] == {
        "metric": "validation:auc",
        "chosen": "linear",
        "chosen_family": "linear",
        "chosen_validation": 0.9012,
        "runner_up": "gbm",
        "runner_up_family": "gbm",
        "runner_up_validation": 0.9034,
    }


def test_health_makes_no_aws_call(api, lambda_context):
    ev = event(None, None, method="GET", resource="/health", path="/health")
    ev["body"] = None
    with Stubber(api.LIVE.sm), Stubber(api.LIVE.s3), Stubber(api.RUNTIME):
        status, body, _ = call(api, ev, lambda_context)
    assert status == 200 and body["status"] == "ok"


def test_unknown_route_is_json_404(api, lambda_context):
    ev = event(None, None, method="GET", resource="/{proxy+}", path="/nothing/here")
    status, body, _ = call(api, ev, lambda_context)
    assert_error(status, body, 404, "not_found")


@pytest.mark.parametrize("origin, allowed", [("https://admin.example.com", True), ("https://evil.example", False)])
def test_cors_headers_for_allowed_origins(api, lambda_context, origin, allowed):
    ev = event(None, None, method="GET", resource="/health", path="/health", headers={"Origin": origin})
    status, _, hdrs = call(api, ev, lambda_context)
    assert status == 200
    assert (hdrs.get("access-control-allow-origin") == origin) is allowed


def test_cors_preflight(api, lambda_context):
    ev = event(
        None,
        None,
        method="OPTIONS",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    status, _, hdrs = call(api, ev, lambda_context)
    assert status in (200, 204)
    assert hdrs["access-control-allow-origin"] == "https://app.example.com"
    assert "x-api-key" in hdrs["access-control-allow-headers"].lower()


def test_live_version_cached_per_endpoint_config(aws, monkeypatch, load_handler, lambda_context):
    monkeypatch.setenv("MODEL_CACHE_TTL_SECONDS", "3600")
    deploy_version(boto3.client("s3"), boto3.client("sagemaker"), "churn-v1", churn_schema())
    app = load_handler("predict")
    calls = []
    app.LIVE.sm.meta.events.register("before-call.sagemaker.*", lambda model, **_: calls.append(model.name))
    with Stubber(app.RUNTIME) as stub:
        for _ in range(3):
            ok_response(stub)
            assert call(app, event({"instances": [churn_record(0)]}), lambda_context)[0] == 200
    assert calls == ["DescribeEndpoint", "DescribeEndpointConfig", "DescribeModel"]


def test_schema_drift_follows_the_live_version(api, lambda_context):
    """Version B drops ``total_day_charge``: after the endpoint moves to B, a record with it is rejected
    and a record without it is accepted; A's contract was the opposite."""
    with_a = churn_record(0)
    without = {k: v for k, v in with_a.items() if k != "total_day_charge"}
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        assert call(api, event({"instances": [with_a]}), lambda_context)[0] == 200
    with Stubber(api.RUNTIME) as stub:  # A requires it: imputed, with a warning
        ok_response(stub)
        status, body, _ = call(api, event({"instances": [without]}), lambda_context)
    assert status == 200 and body["warnings"][0]["fields"] == ["total_day_charge"]
    deploy_version(
        boto3.client("s3"),
        boto3.client("sagemaker"),
        "churn-v2",
        churn_schema(drop=("total_day_charge",)),
        create_bucket=False,
    )
    with Stubber(api.RUNTIME):
        status, body, _ = call(api, event({"instances": [with_a]}), lambda_context)
    assert_error(status, body, 422, "invalid_instances")
    assert body["error"]["version"] == "churn-v2"
    assert [(e["field"], e["code"]) for e in body["error"]["errors"]] == [("total_day_charge", "unknown_feature")]
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        status, body, _ = call(api, event({"instances": [without]}), lambda_context)
    assert status == 200 and body["version"] == "churn-v2" and body["endpoint_config"] == "churn-v2"
    assert "warnings" not in body


def test_logs_have_correlation_id_and_no_feature_values(api, lambda_context, monkeypatch):
    secret = "ZZ-SECRET-STATE"
    sink = io.StringIO()
    monkeypatch.setattr(api.logger.registered_handler, "stream", sink)
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub)
        call(api, event({"instances": [churn_record(0)]}), lambda_context)
    call(api, event({"instances": [{**churn_record(0), "state": secret}]}), lambda_context)
    logs = [json.loads(line) for line in sink.getvalue().splitlines() if line.startswith("{")]
    assert len(logs) == 2 and all(entry.get("correlation_id") == REQUEST_ID for entry in logs)
    text = json.dumps(logs)
    assert secret not in text and "265.1" not in text


@pytest.mark.parametrize(
    "error, http, status, level",
    [
        (("ModelError", 424, {"OriginalStatusCode": 500, "OriginalMessage": "boom"}), 424, 502, "ERROR"),
        (("ServiceUnavailable", 503, None), 503, 503, "ERROR"),
        (("ModelError", 424, {"OriginalStatusCode": 400, "OriginalMessage": "bad"}), 424, 422, "INFO"),
    ],
    ids=["model-5xx", "no-healthy-instance", "model-4xx"],
)
def test_model_5xx_is_logged_as_an_error_4xx_as_info(api, lambda_context, monkeypatch, error, http, status, level):
    """A model or SageMaker failure (5xx to the client) is an ERROR line; a rejected input stays INFO (issue 16
    item 3: the 502s of a dead model server were logged at INFO)."""
    code, _, fields = error
    sink = io.StringIO()
    monkeypatch.setattr(api.logger.registered_handler, "stream", sink)
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error("invoke_endpoint", code, "failed", http, modeled_fields=fields or {})
        got, body, _ = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert got == status, body
    logs = [json.loads(line) for line in sink.getvalue().splitlines() if line.startswith("{")]
    [entry] = [e for e in logs if e.get("error_code") == body["error"]["code"]]
    assert entry["level"] == level and entry["status"] == status, entry


def test_service_unavailable_is_503_with_a_short_retry_after(api, lambda_context):
    """InvokeEndpoint's ServiceUnavailable (no healthy instance, e.g. one being replaced) → 503 + Retry-After."""
    with Stubber(api.RUNTIME) as stub:
        stub.add_client_error("invoke_endpoint", "ServiceUnavailable", "The service is unavailable.", 503)
        got, body, hdrs = call(api, event({"instances": [churn_record(0)]}), lambda_context)
    assert_error(got, body, 503, "model_unavailable")
    assert body["error"]["sagemaker_error"] == "ServiceUnavailable" and hdrs["retry-after"] == "5"


# ---------------------------------------------------------------------------- OpenAPI contract
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _openapi():
    return yaml.safe_load((REPO / "api" / "openapi.yaml").read_text())


def test_openapi_paths_equal_template_api_events():
    tpl = yaml.load((REPO / "template.yaml").read_text(), Loader=_Loader)
    events = tpl["Resources"]["PredictFunction"]["Properties"]["Events"]
    routes = {
        (e["Properties"]["Path"], e["Properties"]["Method"].lower()) for e in events.values() if e["Type"] == "Api"
    }
    doc = _openapi()
    documented = {
        (p, m) for p, ops in doc["paths"].items() for m in ops if m in {"get", "post", "put", "delete", "patch"}
    }
    assert routes == documented
    assert doc["openapi"].startswith("3.")


def test_openapi_documents_every_status_the_code_returns():
    src = (REPO / "layers" / "core" / "sagepipe_core" / "predict.py").read_text()
    code_statuses = {int(s) for s in re.findall(r"ApiError\(\s*(\d{3})", src)}
    post = _openapi()["paths"]["/models/{model}/predictions"]["post"]["responses"]
    documented = {int(s) for s in post if s.isdigit()}
    gateway = {403}  # API Gateway itself: missing/invalid API key or IAM signature
    assert code_statuses | {200} | gateway <= documented, sorted(code_statuses - documented)
    assert documented - code_statuses - {200} - gateway == set() or documented - code_statuses <= {
        200,
        403,
        404,
        429,
        504,
    }


def test_a_model_answering_the_wrong_number_of_predictions_is_502(api, lambda_context):
    with Stubber(api.RUNTIME) as stub:
        ok_response(stub, 1)
        status, body, _ = call(api, event({"instances": [churn_record(0), churn_record(1)]}), lambda_context)
    assert_error(status, body, 502, "model_error")
