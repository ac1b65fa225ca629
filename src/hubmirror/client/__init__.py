"""In-process failover across Hub endpoints for huggingface_hub (and so transformers,
datasets and `HfFileSystem`).

    import hubmirror.client
    hubmirror.client.install(["http://mirror-a:8090", "http://mirror-b:8090",
                              "https://huggingface.co"])

Every request huggingface_hub makes goes to the first healthy endpoint. Connection
errors, timeouts, 408, 429 and 5xx move it to the next one (a body cut mid-way continues
there with `Range`); definite answers (401, 403, a 404 with the Hub's `X-Error-Code`)
are returned as they are. A failed endpoint is tried again after a back-off.
`stats()` tells what each endpoint did.

Needs only huggingface_hub and its dependencies (httpx2): nothing here imports the
mirror's server side.
"""

from hubmirror.client.health import EndpointStats
from hubmirror.client.install import install, stats, uninstall

__all__ = ["EndpointStats", "install", "stats", "uninstall"]
