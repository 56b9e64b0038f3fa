"""Airweave's own Python SDK (airweave-sdk, unchanged) against syncway: the
flows its users run. Run by tests/it/sdk.rs with the API's URL and key."""

import sys
import time

from airweave import AirweaveSDK
from airweave.types import ScheduleConfig

url, key = sys.argv[1], sys.argv[2]
client = AirweaveSDK(base_url=url, api_key=key)
collection = client.collections.create(name="SDK flow")
assert client.collections.get(collection.readable_id).name == "SDK flow"
connection = client.source_connections.create(
    short_name="stub",
    readable_collection_id=collection.readable_id,
    config={"entity_count": 5},
    schedule=ScheduleConfig(continuous=True, cron="0 * * * *"),
)
assert connection.schedule.cron == "0 * * * *" and connection.schedule.next_run is not None
job = client.source_connections.run(connection.id)
assert job.status == "pending", job.status
for _ in range(300):
    latest = client.source_connections.get_source_connection_jobs(connection.id)[0]
    if latest.status in ("completed", "failed", "cancelled"):
        break
    time.sleep(0.1)
assert latest.id == job.id and latest.status == "completed", latest
assert latest.entities_inserted == 5, latest
fetched = client.source_connections.get(connection.id)
assert fetched.entities.total_entities == 5, fetched.entities
assert len(client.source_connections.list()) == 1
updated = client.source_connections.update(connection.id, schedule=ScheduleConfig(cron="30 * * * *"))
assert updated.schedule.cron == "30 * * * *"
client.source_connections.delete(connection.id)
print("sdk flow: ok")
