"""The smallest Python handler that does something with every record — decode, parse, append
one JSON line per record to a local file — the counterpart of a `ctrflow lambda` pipeline with
no plugin and a `file` sink: the pair measures what an invocation costs besides the
pipeline's work (docs/lambda.md, "Measured"). Run it like the baseline:
`python -m awslambdaric python_passthrough.handler` in this folder.
"""

import base64
import json
import os

OUT = os.environ.get("PASSTHROUGH_OUT", "/tmp/passthrough.jsonl")


def handler(event, context):
    with open(OUT, "a") as out:
        for record in event["Records"]:
            try:
                ctr = json.loads(base64.b64decode(record["kinesis"]["data"]))
            except ValueError:
                continue
            out.write(json.dumps(ctr) + "\n")
    return {"batchItemFailures": []}
