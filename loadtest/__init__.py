"""zwz.loadtest: Locust load tests of the answering modes (``zwz bench``) and their accuracy-vs-speed report.

Only ``users``, ``worker`` and ``locustfile`` import Locust (and with it gevent's monkey-patching); they run in
processes of their own. ``plan``, ``wire``, ``report``, ``server_metrics`` and ``bench`` are plain modules.
"""
