"""zwz.ui: the Gradio dual-view UI, a client of the zwz server's HTTP API (``zwz ui``).

``client`` talks to the server, ``views`` runs the global / regional / agent / attention-zoom views and the
heatmap concurrently, ``examples`` offers ZoomWorld and benchmark items, ``form`` and ``render`` turn the page
into a query and results into text, ``app`` is the Gradio Blocks, ``launcher`` starts a demo server.
Gradio is imported only by ``app`` (``pip install 'zwz[ui]'``).
"""
