"""Checks rendered madrpc manifests for what the schemas cannot see.

- A node's CPU request is its --workers, and its memory limit holds every
  worker's --memory plus 256 MiB for the process.
- Every madrpc server is probed: readiness on /ready, liveness on /health.
- The grace period outlasts the preStop sleep plus --drain-timeout, so a
  rolling update never kills a drain.

Usage: python check-resources.py RENDERED.yaml
"""

import re
import sys

import yaml

UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
PROCESS_BYTES = 256 * 2**20


def size(text):
    match = re.fullmatch(r"(\d+)\s*([KMG]i?B?)?", str(text))
    if not match:
        raise ValueError(f"cannot read the size {text!r}")
    return int(match.group(1)) * UNITS[match.group(2) or ""]


def cpus(text):
    text = str(text)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def seconds(text):
    match = re.fullmatch(r"(\d+)s", text)
    if not match:
        raise ValueError(f"cannot read the duration {text!r}")
    return int(match.group(1))


def flag(args, name, default=None):
    for arg in args:
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    return default


def check(path):
    problems = []
    with open(path) as rendered:
        documents = [d for d in yaml.safe_load_all(rendered) if d]
    servers = 0
    for doc in documents:
        if doc.get("kind") != "Deployment":
            continue
        name = doc["metadata"]["name"]
        spec = doc["spec"]["template"]["spec"]
        for container in spec["containers"]:
            args = container.get("args", [])
            if not args or args[0] not in ("node", "gateway"):
                continue
            servers += 1
            where = f"{name}/{container['name']}"
            readiness = container.get("readinessProbe", {}).get("httpGet", {}).get("path")
            liveness = container.get("livenessProbe", {}).get("httpGet", {}).get("path")
            if (readiness, liveness) != ("/ready", "/health"):
                problems.append(f"{where}: probes are {readiness} and {liveness}, not /ready and /health")
            pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            drain = seconds(flag(args, "drain-timeout", "30s"))
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace <= pre_stop + drain:
                problems.append(f"{where}: terminationGracePeriodSeconds {grace} does not outlast preStop {pre_stop} s + --drain-timeout {drain} s")
            if args[0] != "node":
                continue
            workers = flag(args, "workers")
            memory = flag(args, "memory")
            if workers is None or memory is None:
                problems.append(f"{where}: give --workers and --memory, which its resources are sized from")
                continue
            workers = int(workers)
            resources = container.get("resources", {})
            cpu_request = cpus(resources.get("requests", {}).get("cpu", "0"))
            if cpu_request != workers:
                problems.append(f"{where}: requests {cpu_request} CPU for --workers={workers}")
            limit = size(resources.get("limits", {}).get("memory", "0"))
            needed = workers * size(memory) + PROCESS_BYTES
            if limit < needed:
                problems.append(f"{where}: memory limit {limit} bytes is under {needed} (--workers x --memory + 256 MiB)")
    if servers == 0:
        problems.append("no madrpc gateway or node found")
    for problem in problems:
        print(f"deploy/check: {path}: {problem}", file=sys.stderr)
    return not problems


if __name__ == "__main__":
    sys.exit(0 if all(check(p) for p in sys.argv[1:]) else 1)
