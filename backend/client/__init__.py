"""Client of a TrajMaster server (docs/server.md), standard library only.

    from backend.client import Client, ServerError

    client = Client("http://gpu-box:8765", token_file="trajmaster.token")
    job_id = client.submit(job_dict)["id"]               # detach=True: runs without a follower
    for event in client.events(job_id, after=0):         # resumable: pass the last event's seq
        ...                                              # the same events as docs/protocol.md
    take = client.fetch(job_id, "/takes/shot", "shot_take_004")   # a local take, whole or absent

Importing it needs nothing but Python's standard library, so the add-on can use it inside
Blender's own Python; every failure is a ServerError carrying one sentence.
"""

from .client import FINAL_EVENTS, TOKEN_ENV, Client, new_request_key
from .transport import ServerError, normalize_url, read_token_file

__all__ = ["FINAL_EVENTS", "TOKEN_ENV", "Client", "ServerError", "new_request_key", "normalize_url", "read_token_file"]
