"""HTTP API routers of the cloud service, one module per resource."""
