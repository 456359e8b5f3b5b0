"""Web framework integrations of svc_infra."""
