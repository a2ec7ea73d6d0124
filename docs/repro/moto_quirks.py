"""Shows the moto quirks docs/measurements.md#moto describes, against a moto server it starts.

Run with the Python of the pinned moto venv (boto3 comes with moto):
    MOTO=$(cargo xtask moto); "$(dirname "$MOTO")/python" docs/repro/moto_quirks.py
"""

import os
import socket
import subprocess
import sys
import time

import boto3

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
server = subprocess.Popen([moto_server, "-H", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    time.sleep(1.5)
    kw = dict(endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")

    kinesis = boto3.client("kinesis", **kw)
    kinesis.create_stream(StreamName="s", ShardCount=1)
    out = kinesis.put_records(StreamName="s", Records=[{"Data": b"x", "PartitionKey": "p"}] * 3)
    print("Kinesis sequence numbers:", [r["SequenceNumber"] for r in out["Records"]])
    arn = kinesis.describe_stream_summary(StreamName="s")["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="c")["Consumer"]["ConsumerARN"]
    try:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000",
                                   StartingPosition={"Type": "TRIM_HORIZON"})
        print("SubscribeToShard: answered")
    except Exception as e:
        print("SubscribeToShard:", str(e).splitlines()[0][:110])

    dynamodb = boto3.client("dynamodb", **kw)
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
    puts = [{"PutRequest": {"Item": {"k": {"S": str(i)}}}} for i in range(26)]
    try:
        dynamodb.batch_write_item(RequestItems={"t": puts})
        print("BatchWriteItem of 26 items: accepted; items in table:",
              dynamodb.scan(TableName="t", Select="COUNT")["Count"])
    except Exception as e:
        print("BatchWriteItem of 26 items: rejected:", e)

    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket="quirks-bucket")
    firehose = boto3.client("firehose", **kw)
    for name, extra in (("without", {}), ("with", {"CompressionFormat": "UNCOMPRESSED"})):
        firehose.create_delivery_stream(DeliveryStreamName=name, ExtendedS3DestinationConfiguration=dict(
            RoleARN="arn:aws:iam::123456789012:role/firehose", BucketARN="arn:aws:s3:::quirks-bucket",
            Prefix=name + "/", **extra))
        dest = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["Destinations"][0]
        described = dest.get("ExtendedS3DestinationDescription", {}).get("CompressionFormat", "<missing>")
        print(f"Firehose created {name} CompressionFormat: DescribeDeliveryStream says {described}")
    firehose.put_record_batch(DeliveryStreamName="with", Records=[{"Data": b'{"a":1}\n'}] * 3)
    objects = s3.list_objects_v2(Bucket="quirks-bucket", Prefix="with/").get("Contents", [])
    body = s3.get_object(Bucket="quirks-bucket", Key=objects[0]["Key"])["Body"].read() if objects else None
    print("PutRecordBatch of 3 records: S3 objects immediately after:", len(objects), body)
finally:
    server.terminate()
    server.wait()
