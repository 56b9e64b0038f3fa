"""Airweave's Python SDK (airweave-sdk, unchanged) runs all eight webhook
calls against syncway, and the deliveries it receives are verified by the
`standardwebhooks` package (an implementation syncway did not write).
Run by tests/it/sdk.rs with the API's URL and key; the API and its worker
allow loopback endpoints."""

import datetime
import http.server
import json
import sys
import threading
import time

import standardwebhooks
from airweave import AirweaveSDK

url, key = sys.argv[1], sys.argv[2]
client = AirweaveSDK(base_url=url, api_key=key)

received = []
lock = threading.Lock()


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        with lock:
            received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"received": true}')

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = f"http://127.0.0.1:{server.server_address[1]}/hooks"


def wait_for(what, check, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


started = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
subscription = client.webhooks.create_subscription(
    url=endpoint, event_types=["sync.pending", "sync.running", "sync.completed"]
)
assert subscription.url == endpoint and not subscription.disabled, subscription
assert sorted(subscription.filter_types) == ["sync.completed", "sync.pending", "sync.running"]
assert [s.id for s in client.webhooks.get_subscriptions()] == [subscription.id]

collection = client.collections.create(name="Webhook flow")
connection = client.source_connections.create(
    short_name="stub", readable_collection_id=collection.readable_id, config={"entity_count": 3}
)
job = client.source_connections.run(connection.id)


def completed():
    with lock:
        return [
            (headers, body)
            for headers, body in received
            if json.loads(body)["event_type"] == "sync.completed"
        ]


headers, body = wait_for("sync.completed to arrive", completed)[0]
detail = client.webhooks.get_subscription(subscription.id, include_secret=True)
assert detail.secret.startswith("whsec_"), "the secret is shown when asked for"
assert client.webhooks.get_subscription(subscription.id).secret is None
payload = standardwebhooks.Webhook(detail.secret).verify(body, headers)
assert payload["job_id"] == str(job.id) and payload["status"] == "completed", payload
assert payload["entities_inserted"] == 3, payload
assert headers["svix-id"] == headers["webhook-id"], headers
with lock:
    kinds = sorted(json.loads(body)["event_type"] for _, body in received)
assert kinds == ["sync.completed", "sync.pending", "sync.running"], kinds

messages = client.webhooks.get_messages(event_types=["sync.completed"])
assert [m.event_type for m in messages] == ["sync.completed"], messages
assert messages[0].id == headers["webhook-id"]
message = client.webhooks.get_message(messages[0].id, include_attempts=True)
assert [a.status for a in message.delivery_attempts] == ["success"], message
assert message.delivery_attempts[0].response_status_code == 200
wait_for("the attempts to count", lambda: client.webhooks.get_subscription(subscription.id).delivery_attempts)
assert client.webhooks.get_subscription(subscription.id).health_status == "healthy"

patched = client.webhooks.patch_subscription(
    subscription.id, event_types=["sync.failed"], disabled=True
)
assert patched.filter_types == ["sync.failed"] and patched.disabled, patched
patched = client.webhooks.patch_subscription(subscription.id, disabled=False, recover_since=started)
assert not patched.disabled, patched
task = client.webhooks.recover_failed_messages(subscription.id, since=started)
assert task.status in ("running", "completed"), task
deleted = client.webhooks.delete_subscription(subscription.id)
assert deleted.id == subscription.id
assert client.webhooks.get_subscriptions() == []
server.shutdown()
print("webhook flow: ok")
