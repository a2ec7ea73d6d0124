"""The baseline `ctrflow lambda` is measured against (docs/lambda.md, "Measured"): the
hand-written Python handler a team runs today for Connect → Kinesis → Lambda → Firehose and
DynamoDB, doing the founding pipeline's work — decode, parse, redact the customer's number,
enrich from the agents table (cached), put to Firehose, newer-wins put to DynamoDB — with a
partial batch response. It runs under AWS's own runtime interface client, as in Lambda's
Python images — `python -m awslambdaric python_baseline.handler` in this folder, with
`AWS_LAMBDA_RUNTIME_API` set — so it talks to the same local runtime API as `ctrflow lambda`
(`cargo xtask lambda-python` installs awslambdaric and boto3 outside the clone).

It is a measuring stick, not a product: no KPL de-aggregation, no dead letters, no retries
beyond boto3's own.
"""

import base64
import json
import os

import boto3
from botocore.exceptions import ClientError

_endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
firehose = boto3.client("firehose", endpoint_url=_endpoint)
dynamodb = boto3.client("dynamodb", endpoint_url=_endpoint)
DELIVERY = os.environ.get("CTR_DELIVERY_STREAM", "ctrflow-ctr-lake")
TABLE = os.environ.get("CTR_TABLE", "ctrflow-contacts")
AGENTS = os.environ.get("AGENTS_TABLE", "ctrflow-agents")
_agents = {}


def agent(username):
    if username not in _agents:
        item = dynamodb.get_item(TableName=AGENTS, Key={"username": {"S": username}}).get("Item")
        _agents[username] = {k: v["S"] for k, v in item.items()} if item else None
    return _agents[username]


def redact(ctr):
    addr = (ctr.get("CustomerEndpoint") or {}).get("Address")
    if isinstance(addr, str):
        ctr["CustomerEndpoint"]["Address"] = "*" * max(len(addr) - 4, 0) + addr[-4:]
    attrs = ctr.get("Attributes") or {}
    for key in ("customerName", "accountNumber"):
        if key in attrs:
            attrs[key] = "*" * len(str(attrs[key]))


def handler(event, context):
    failures, lines = [], []
    for record in event["Records"]:
        seq = record["kinesis"]["sequenceNumber"]
        try:
            ctr = json.loads(base64.b64decode(record["kinesis"]["data"]))
            redact(ctr)
            username = (ctr.get("Agent") or {}).get("Username")
            if username and agent(username):
                ctr["AgentInfo"] = agent(username)
            lines.append((seq, ctr))
        except ValueError:
            continue  # a malformed record: dropped, as most hand-written handlers do
    for i in range(0, len(lines), 500):
        chunk = lines[i : i + 500]
        resp = firehose.put_record_batch(
            DeliveryStreamName=DELIVERY,
            Records=[{"Data": (json.dumps(c) + "\n").encode()} for _, c in chunk],
        )
        for (seq, _), r in zip(chunk, resp["RequestResponses"]):
            if r.get("ErrorCode"):
                failures.append(seq)
    for seq, ctr in lines:
        item = {"ContactId": {"S": ctr["ContactId"]}, "LastUpdateTimestamp": {"S": ctr["LastUpdateTimestamp"]},
                "Document": {"S": json.dumps(ctr)}}
        try:
            dynamodb.put_item(
                TableName=TABLE,
                Item=item,
                ConditionExpression="attribute_not_exists(ContactId) OR LastUpdateTimestamp <= :t",
                ExpressionAttributeValues={":t": {"S": ctr["LastUpdateTimestamp"]}},
            )
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConditionalCheckFailedException":
                failures.append(seq)
    order = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
    first = min((order.index(s) for s in failures), default=None)
    return {"batchItemFailures": [] if first is None else [{"itemIdentifier": order[first]}]}

