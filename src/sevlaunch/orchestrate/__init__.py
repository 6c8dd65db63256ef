"""The VM tool: carries blobs between a host manager and a guest owner through steps 1-13."""
