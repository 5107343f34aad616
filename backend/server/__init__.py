"""The team server: `python -m backend server` (docs/server.md).

Ray Serve in front of a pool of model replicas: an HTTP gateway (FastAPI, `api.py` + `gateway.py`)
checks the token, the request size and the job (the same `backend.job` code as the CLI) and hands
each job to a model replica (`replica.py`: one per GPU, one job at a time, the engine kept warm as
the local worker keeps it) through a Ray Serve handle; Ray does the queueing and the scheduling.
The take's files come back through Ray to the gateway, which keeps them in its state folder
(`book.py`) until a client fetches them over HTTP (`backend/client`).

Nothing here imports Ray at module level except `app.py` and `gateway.py`, which only the server
process loads: the add-on, the CLI and the local worker never need Ray.
"""

API_VERSION = 1
APP_NAME = "trajmaster"
