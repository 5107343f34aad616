"""TrajMaster Previz backend: runs in its own Python process (`python -m backend`).

Importing this package is cheap and torch-free: the Blender add-on imports its pure modules
(poses, timeplan, checks, job, events) for the shared contract. The model lives in
backend.cogvideox and is imported only by the cogvideox engine.
"""

__version__ = "0.1.0"
