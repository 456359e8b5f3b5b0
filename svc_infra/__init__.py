"""svc_infra: service infrastructure for Django and FastAPI applications."""
