"""``multiembed serve``: an HTTP API (OpenAI-compatible embeddings, collection search) and a search page.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart); nothing here is imported by
``import multiembed``. Start it with ``multiembed serve`` or build the app with
:func:`multiembed.serve.app.create_app`.
"""
