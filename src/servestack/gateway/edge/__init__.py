"""The HTTP edge: the ASGI app and its route table, the server and its protocol, the pipeline around every request."""
