"""The spec's FastAPI examples, as runnable apps (``uvicorn project.fastapi_examples.X:app``).

Each module keeps the spec's code as written; where the spec shows a fragment,
the fragment sits in the smallest app that runs it. Authenticated examples read
the JWT secret from ``AUTH_JWT__SECRET``.
"""
