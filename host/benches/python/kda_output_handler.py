"""The Python baseline of the benchmarks: a KDA "Lambda as output" handler written the way the
AWS blueprints (kinesis-analytics-output and its -sns/-ddb variants) are, doing the same work as
the three benchmarked plugins.

The blueprint shape: loop over the records, base64-decode each, process and deliver it, answer
Ok, or DeliveryFailed when an exception is caught. Delivery goes to a list that is thrown away,
like the host's `discard` destination in the WebAssembly and native runs.

Used by host/benches/benchmarks.rs, which sends the cases as JSON on stdin:

    python3 kda_output_handler.py bench BUDGET_SECONDS < cases.json
        cases: [{"name", "plugin": "identity"|"string"|"aggregate", "event": PATH, "config": {}}]
        prints [{"name", "seconds_per_batch", "records", "ok", "outputs"}]

    python3 kda_output_handler.py rss COMMAND [ARGS...]
        runs COMMAND and prints its peak RSS in KiB and its exit status as JSON
"""

import base64
import json
import os
import subprocess
import sys
import time


def names(spec):
    """The names of a `;`-separated field list (as the string-transform plugin reads it)."""
    return [n.strip() for n in spec.split(";") if n.strip()]


def apply(fields, spec, step):
    if spec is None:
        return
    keys = list(fields) if "*" in names(spec) else [n for n in names(spec) if n in fields]
    for key in keys:
        fields[key] = step(fields[key])


def trim(v):
    return v.strip() if isinstance(v, str) else v


def upper(v):
    return v.upper() if isinstance(v, str) else v


def lower(v):
    return v.lower() if isinstance(v, str) else v


def mask(v):
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        return v
    s = v if isinstance(v, str) else json.dumps(v)
    if len(s) <= 4:
        return s
    return "*" * (len(s) - 4) + s[-4:]


def string_transform(row, config):
    """The string-transform plugin's steps, in its order: drop, rename, trim, upper, lower, mask."""
    fields = json.loads(row)
    if not isinstance(fields, dict):
        raise ValueError("record is not a JSON object")
    if "drop" in config:
        dropped = set(names(config["drop"]))
        fields = {k: v for k, v in fields.items() if k not in dropped}
    if "rename" in config:
        pairs = dict(p.rsplit(":", 1) for p in names(config["rename"]))
        pairs = {o.strip(): n.strip() for o, n in pairs.items() if o.strip() in fields}
        if pairs:
            taken = set(pairs.values())
            renamed = {}
            for k, v in fields.items():
                if k in pairs:
                    renamed[pairs[k]] = v
                elif k not in taken:
                    renamed[k] = v
            fields = renamed
    apply(fields, config.get("trim"), trim)
    apply(fields, config.get("upper"), upper)
    apply(fields, config.get("lower"), lower)
    apply(fields, config.get("mask"), mask)
    return [json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()]


class Aggregate:
    """The aggregate plugin: per-group count, sum, min and max; one summary per group at the end."""

    def __init__(self, config):
        self.group_by = config.get("group_by")
        self.fields = names(config.get("fields", ""))
        self.totals = {}

    def process(self, row):
        fields = json.loads(row)
        group = fields[self.group_by] if self.group_by else "*"
        values = [(f, float(fields[f])) for f in self.fields]
        t = self.totals.setdefault(str(group), {"count": 0, "sum": {}, "min": {}, "max": {}})
        t["count"] += 1
        for f, x in values:
            t["sum"][f] = t["sum"].get(f, 0.0) + x
            t["min"][f] = min(t["min"].get(f, x), x)
            t["max"][f] = max(t["max"].get(f, x), x)
        return []

    def flush(self):
        return [
            json.dumps({"group": g, **t}, separators=(",", ":")).encode()
            for g, t in sorted(self.totals.items())
        ]


def lambda_handler(event, plugin, config, delivered):
    """One invocation, blueprint style."""
    aggregate = Aggregate(config) if plugin == "aggregate" else None
    output = []
    for record in event["records"]:
        try:
            payload = base64.b64decode(record["data"])
            if plugin == "identity":
                delivered.append(payload)
            elif plugin == "string":
                delivered.extend(string_transform(payload, config))
            else:
                aggregate.process(payload)
            output.append({"recordId": record["recordId"], "result": "Ok"})
        except Exception:
            output.append({"recordId": record["recordId"], "result": "DeliveryFailed"})
    if aggregate is not None:
        delivered.extend(aggregate.flush())
    return {"records": output}


def invoke(text, plugin, config):
    """What one invocation costs: the event arrives as JSON text and the answer leaves as JSON."""
    delivered = []
    response = lambda_handler(json.loads(text), plugin, config, delivered)
    return json.dumps(response), response, delivered


def bench(budget, cases):
    results = []
    for case in cases:
        with open(case["event"]) as f:
            text = f.read()
        _, response, delivered = invoke(text, case["plugin"], case["config"])
        # Like the Rust side: batches per sample so a sample lasts >= 10 ms, samples until the
        # budget is spent (at least 3), and the fastest sample (interference only adds time).
        start = time.perf_counter()
        invoke(text, case["plugin"], case["config"])
        once = max(time.perf_counter() - start, 1e-9)
        per_sample = max(1, int(0.01 / once))
        samples = []
        spent = 0.0
        while spent < budget or len(samples) < 3:
            start = time.perf_counter()
            for _ in range(per_sample):
                invoke(text, case["plugin"], case["config"])
            elapsed = time.perf_counter() - start
            spent += elapsed
            samples.append(elapsed / per_sample)
        results.append(
            {
                "name": case["name"],
                "seconds_per_batch": min(samples),
                "records": len(response["records"]),
                "ok": sum(r["result"] == "Ok" for r in response["records"]),
                "outputs": len(delivered),
            }
        )
    return results


def rss(command):
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return {"max_rss_kib": usage.ru_maxrss, "exit_code": child.returncode}


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "bench":
        print(json.dumps(bench(float(sys.argv[2]), json.load(sys.stdin))))
    elif len(sys.argv) >= 3 and sys.argv[1] == "rss":
        print(json.dumps(rss(sys.argv[2:])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
