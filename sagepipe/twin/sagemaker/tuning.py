"""The twin's SageMaker hyperparameter tuning: a CreateHyperParameterTuningJob run as real local
training jobs (see :class:`TuningManager`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from .training import LogSink, _now


class TuningManager:
    """Runs a CreateHyperParameterTuningJob as its training jobs, one after the other, through the
    twin's own CreateTrainingJob (so each is a real local training job), then fills in
    ``BestTrainingJob`` from each job's objective metric in ``FinalMetricDataList``.

    Search: random sampling of the ranges (uniform, or log-uniform for ``Logarithmic`` scaling), seeded
    by the tuning job name; ``Strategy: Bayesian`` is run as random search too (documented twin
    difference). ``MaxParallelTrainingJobs`` is ignored (sequential); its training jobs
    take the twin's training slots like any other (:mod:`.capacity`). Child names follow AWS:
    ``<tuning job>-<3 digits>-<8 hex>``.
    """

    def __init__(self, sagemaker_factory: Callable[[], Any], log_sink: LogSink) -> None:
        self.sagemaker_factory = sagemaker_factory
        self.log_sink = log_sink
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self.stop_requested: set[str] = set()  # StopHyperParameterTuningJob names

    @staticmethod
    def sample(ranges: dict[str, list[dict[str, Any]]], rng: Any) -> dict[str, str]:
        """One draw from ``ParameterRanges`` (values as strings, as SageMaker passes tuned values)."""
        import math

        out: dict[str, str] = {}
        for r in ranges.get("CategoricalParameterRanges", []):
            out[r["Name"]] = rng.choice(r["Values"])
        for kind in ("IntegerParameterRanges", "ContinuousParameterRanges"):
            for r in ranges.get(kind, []):
                lo, hi = float(r["MinValue"]), float(r["MaxValue"])
                if r.get("ScalingType") == "Logarithmic" and lo > 0:
                    value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
                else:
                    value = rng.uniform(lo, hi)
                out[r["Name"]] = str(int(round(value))) if kind == "IntegerParameterRanges" else repr(value)
        return out

    def start(self, job: Any, request: dict[str, Any]) -> None:
        """Run ``request`` for moto's tuning job object ``job`` (mutated in place) in a thread."""
        import random

        name = request["HyperParameterTuningJobName"]
        job.hyper_parameter_tuning_job_status = "InProgress"
        job.best_training_job = None
        job.OverallBestTrainingJob = None
        job.hyper_parameter_tuning_end_time = None
        job.tuning_job_completion_details = None
        cfg, definition = request["HyperParameterTuningJobConfig"], request["TrainingJobDefinition"]
        objective = cfg["HyperParameterTuningJobObjective"]
        maximize = objective["Type"] == "Maximize"
        rng = random.Random(name)

        def run() -> None:
            sm = self.sagemaker_factory()
            results: list[dict[str, Any]] = []
            counters = {"Completed": 0, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
            for i in range(int(cfg["ResourceLimits"]["MaxNumberOfTrainingJobs"])):
                if self.stopping.is_set() or name in self.stop_requested:
                    break
                tuned = self.sample(cfg.get("ParameterRanges", {}), rng)
                child = f"{name}-{i + 1:03d}-{rng.getrandbits(32):08x}"
                self.log_sink(f"tuning:{name}", f"training job {child} with {tuned}")
                sm.create_training_job(
                    TrainingJobName=child,
                    HyperParameters={**definition.get("StaticHyperParameters", {}), **tuned},
                    AlgorithmSpecification=definition["AlgorithmSpecification"],
                    RoleArn=definition["RoleArn"],
                    InputDataConfig=definition["InputDataConfig"],
                    OutputDataConfig=definition["OutputDataConfig"],
                    ResourceConfig=definition["ResourceConfig"],
                    StoppingCondition=definition["StoppingCondition"],
                )
                stop_sent = False
                while True:
                    desc = sm.describe_training_job(TrainingJobName=child)
                    if desc["TrainingJobStatus"] in {"Completed", "Failed", "Stopped"}:
                        break
                    if name in self.stop_requested and not stop_sent and desc["TrainingJobStatus"] == "InProgress":
                        sm.stop_training_job(TrainingJobName=child)
                        stop_sent = True
                    time.sleep(0.3)
                status = desc["TrainingJobStatus"]
                counters[
                    "Completed" if status == "Completed" else "Stopped" if status == "Stopped" else "NonRetryableError"
                ] += 1
                value = next(
                    (
                        m["Value"]
                        for m in desc.get("FinalMetricDataList", [])
                        if m["MetricName"] == objective["MetricName"]
                    ),
                    None,
                )
                results.append(
                    {
                        "name": child,
                        "arn": desc["TrainingJobArn"],
                        "status": status,
                        "tuned": tuned,
                        "value": value,
                        "created": desc["CreationTime"],
                        "ended": desc.get("TrainingEndTime"),
                    }
                )
                self.log_sink(f"tuning:{name}", f"{child}: {status}, {objective['MetricName']} = {value}")
            scored = [r for r in results if r["status"] == "Completed" and r["value"] is not None]
            job.training_job_status_counters = counters
            job.objective_status_counters = {
                "Succeeded": len(scored),
                "Pending": 0,
                "Failed": len(results) - len(scored),
            }
            job.hyper_parameter_tuning_end_time = job.last_modified_time = _now()
            if name in self.stop_requested:
                job.hyper_parameter_tuning_job_status = "Stopped"
                return
            if not scored:
                job.failure_reason = "No training job completed with the objective metric " + objective["MetricName"]
                job.hyper_parameter_tuning_job_status = "Failed"
                return
            best = (max if maximize else min)(scored, key=lambda r: r["value"])
            job.best_training_job = job.OverallBestTrainingJob = {
                "TrainingJobName": best["name"],
                "TrainingJobArn": best["arn"],
                "TuningJobName": name,
                "CreationTime": best["created"],
                "TrainingEndTime": best["ended"],
                "TrainingJobStatus": "Completed",
                "TunedHyperParameters": best["tuned"],
                "ObjectiveStatus": "Succeeded",
                "FinalHyperParameterTuningJobObjectiveMetric": {
                    "Type": objective["Type"],
                    "MetricName": objective["MetricName"],
                    "Value": best["value"],
                },
            }
            job.hyper_parameter_tuning_job_status = "Completed"

        thread = threading.Thread(target=run, name=f"tuning-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def stop(self, name: str) -> None:
        """StopHyperParameterTuningJob ``name``: its running training job is stopped, no other starts; the
        job ends ``Stopped`` (its status is already ``Stopping``)."""
        self.stop_requested.add(name)

    def shutdown(self) -> None:
        """Start no further training jobs (running ones are stopped by the TrainingManager)."""
        self.stopping.set()
