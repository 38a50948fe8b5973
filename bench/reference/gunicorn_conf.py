"""Gunicorn settings of the reference: the same as authserver's (authserver/gunicorn_conf.py).

Copied, not imported: the reference shares no code with authserver.
"""

accesslog = None
errorlog = "-"
worker_class = "sync"
control_socket_disable = True
keepalive = 5
